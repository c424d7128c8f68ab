"""The live dashboard of a training run: ``python -m tui RUN_DIR [RUN_DIR ...]``.

It reads ``RUN_DIR/metrics.jsonl`` (docs/metrics.md) and nothing else; it never imports
nli_qlora, so it starts fast and runs anywhere the file can be read.
"""
