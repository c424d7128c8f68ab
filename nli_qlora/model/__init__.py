"""The model: a 4-bit base with LoRA adapters, from the hub, a directory, a GGUF file or built in."""
