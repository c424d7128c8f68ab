"""From rows to batches: reading, the built-in data set, the prompt, tokenizing and batching."""
