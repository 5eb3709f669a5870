"""Training energy+force models: configs, losses, statistics, the trainer and evaluation."""
