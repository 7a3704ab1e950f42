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


def check_int(name: str, value, minimum: int = 1) -> int:
    """Return `value` if it is an integer >= `minimum`, else raise ValueError naming `name`.

    The project's one integer check: SDEs, samplers and config validation all use it."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def randn(shape, generator=None, device=None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Standard normal noise of `shape` `[B, ...]` from `generator`.

    `generator` may be None (the global RNG), one `torch.Generator`, or a list of B generators,
    one per sample: row i is then drawn from generator i alone, so sample i gets the same noise
    whatever batch it is drawn in. The noise is made on the generator's device and moved to
    `device`.
    """
    shape = tuple(shape)
    if isinstance(generator, (list, tuple)):
        if len(generator) != shape[0]:
            raise ValueError(f"{len(generator)} per-sample generators for a batch of {shape[0]}")
        rows = [torch.randn(shape[1:], generator=g, device=g.device, dtype=dtype) for g in generator]
        noise = torch.stack(rows) if rows else torch.empty(shape, dtype=dtype)
    else:
        source = generator.device if generator is not None else device
        noise = torch.randn(shape, generator=generator, device=source, dtype=dtype)
    return noise.to(device) if device is not None else noise

