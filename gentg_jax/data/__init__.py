"""Data: TFDS builders, the synthetic generator and grain input pipelines."""
