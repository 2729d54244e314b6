"""One-off data conversions: `data_prep.convert_h36m` and `data_prep.make_synthetic` (python -m)."""
