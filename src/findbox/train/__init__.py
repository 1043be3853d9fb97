"""Training scripts: the detector, the scorer, and the data conversions they need."""
