"""Training: the scoring function, the one step, the optimizer, evaluation and the recipe that runs them."""
