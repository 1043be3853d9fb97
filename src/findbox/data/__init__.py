"""Data sets findbox reads: `vlm.py` holds the vlm.jsonl record, its reader, the train/val split and split.json."""
