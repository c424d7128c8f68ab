"""Scoring a file of pairs with a checkpoint or a pretrained model (the score command's work)."""
