"""Side tools over the pipeline: the memory estimate, the dry-run preflight and the batch tuner."""
