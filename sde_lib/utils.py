"""Small tensor helpers shared by every module."""
from __future__ import annotations

import torch


def append_dims(x: torch.Tensor, target_ndim: int) -> torch.Tensor:
    """Append trailing singleton dims so that a `[B]` tensor broadcasts against `[B, ...]`.

    `append_dims(std, x.ndim) * x` works for vectors `[B, d]` and images `[B, C, H, W]` alike.
    """
    missing = target_ndim - x.ndim
    if missing < 0:
        raise ValueError(f"append_dims: input has {x.ndim} dims, more than target_ndim={target_ndim}")
    return x[(...,) + (None,) * missing]


def batch_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum over every dim but the first: `[B, ...] -> [B]`."""
    return x.flatten(1).sum(1)


def check_positive_int(name: str, value) -> int:
    """Return `value` if it is an integer >= 1, else raise ValueError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return value
