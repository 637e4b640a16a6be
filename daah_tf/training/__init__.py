"""The training run: run directory, checkpoints, evaluation during training, the loop."""
