"""Training: recipes by name, strategies, and the one loop (`loop.fit`) in named pieces:
batches, steps, hooks, signals, checkpoints; then what a finished run writes (`artifacts`)."""
