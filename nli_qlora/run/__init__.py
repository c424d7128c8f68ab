"""A run directory: its lock, checkpoints, the metrics file, prediction files and the report."""
