"""The commands: each module parses flags and calls into the package."""
