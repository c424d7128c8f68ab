"""The dashboard's panels, one widget per file, each with its own CSS."""
