"""Training: denoising score-matching losses, data, checkpoints and the training loop."""
