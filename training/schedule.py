"""The learning-rate schedule shared by the score model's and the classifier's training."""
from __future__ import annotations


def warmup_learning_rate(lr: float, warmup: int, step: int) -> float:
    """`lr`·min(1, (step + 1)/warmup): linear warm-up over `warmup` steps (0: none), then
    constant."""
    return lr * (min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0)
