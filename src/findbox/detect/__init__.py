"""Stage 1: box proposals. `ultralytics.Detector` (one checkpoint), `sliced` (tiles plus the
full image), `ensemble.EnsembleDetector` (several checkpoints fused by WBF). All return `Candidates`."""
