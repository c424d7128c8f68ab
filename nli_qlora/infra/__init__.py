"""Infrastructure every stage leans on: atomic writes, disk errors, signals, processes, out-of-memory policy."""
