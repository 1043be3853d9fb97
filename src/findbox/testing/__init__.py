"""Test and benchmark helpers: models built from scratch in real file formats, and the
original's per-instance loop as a reference. Never imported by the library itself."""
