"""nli-qlora: fine-tune causal language models with QLoRA for natural language inference."""

__version__ = "0.1.0"
