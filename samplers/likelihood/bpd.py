"""Bits per dimension of discrete data from a continuous density of its dequantized version."""
from __future__ import annotations

import math

import torch

from samplers.common import check_int


def bits_per_dim(logp: torch.Tensor, num_dims: int, *, centered: bool,
                 bins: int = 256) -> torch.Tensor:
    """−log₂ P(k)/D for discrete data k with `bins` levels per dim, from log p(x) in nats `[B]`.

    Data with `bins` levels is scaled to an interval of width w, [0, 1] (`centered=False`, w = 1)
    or [−1, 1] (`centered=True`, w = 2), and dequantized uniformly within its bins of width w/bins:
    x = k + u. The probability of the discrete point is the density's mass over its bin,
    P(k) = (w/bins)^D·E_u[p(k + u)], so by Jensen log P(k) ≥ E_u[log p(x)] + D·log(w/bins) (the
    dequantization bound of Theis et al. 2016, Ho et al. 2019). Per dimension, in bits:
        bpd = −log p(x)/(D·ln 2) + log₂(bins/w),
    an offset of 8 bits for 256 bins on [0, 1] and 7 on [−1, 1] (the reference code's
    "7 − inverse_scaler(−1)"). Returns `[B]`, typed like `logp`.
    """
    num_dims = check_int("num_dims", num_dims)
    bins = check_int("bins", bins)
    width = 2.0 if centered else 1.0
    return -logp / (num_dims * math.log(2)) + math.log2(bins / width)
