"""Particle bookkeeping for sequential Monte Carlo: effective sample size, per-observation
uniforms and systematic resampling (Kitagawa 1996; Douc, Cappé & Moulines 2005).

Particles live in `[B, K]` blocks, K per observation. Every random draw of observation b comes
from generator b when a list of B generators is given, and only observations that resample
draw, so observation b's particles never depend on the rest of the batch.
"""
from __future__ import annotations

import torch

from samplers.common import Generator


def effective_sample_size(log_weights: torch.Tensor) -> torch.Tensor:
    """ESS = 1 / Σ_k w_k² of the normalized weights, per observation: `[B, K] -> [B]` in [1, K]."""
    weights = torch.softmax(log_weights, dim=1)
    return 1.0 / (weights ** 2).sum(1)


def uniforms(rows: torch.Tensor, generator: Generator, device) -> torch.Tensor:
    """One U[0, 1) draw (float64) per observation index in `rows` `[n]`, from its generator."""
    if isinstance(generator, (list, tuple)):
        draws = [torch.rand(1, generator=generator[b], device=generator[b].device,
                            dtype=torch.float64) for b in rows.tolist()]
        return torch.cat(draws).to(device) if draws else torch.zeros(0, dtype=torch.float64,
                                                                     device=device)
    source = generator.device if generator is not None else device
    return torch.rand(len(rows), generator=generator, device=source,
                      dtype=torch.float64).to(device)


def inverse_cdf(log_weights: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Indices `[n, M]` of the particles whose cumulative weight first exceeds `positions`
    `[n, M]` in [0, 1), for normalized-by-softmax `log_weights` `[n, K]`."""
    cdf = torch.softmax(log_weights, dim=1).cumsum(1)
    cdf[:, -1] = 1.0                                         # rounding: the last bin closes at 1
    index = torch.searchsorted(cdf, positions.contiguous(), right=True)
    return index.clamp(max=log_weights.shape[1] - 1)


def systematic_resample(log_weights: torch.Tensor, resample: torch.Tensor,
                        generator: Generator) -> torch.Tensor:
    """Ancestor indices `[B, K]`: systematic resampling for observations where `resample` `[B]`
    is True (one uniform each, positions (u + k)/K), the identity elsewhere."""
    batch, k = log_weights.shape
    ancestors = torch.arange(k, device=log_weights.device).expand(batch, k).clone()
    rows = resample.nonzero()[:, 0]
    if len(rows):
        offsets = torch.arange(k, device=log_weights.device, dtype=torch.float64)
        positions = (uniforms(rows, generator, log_weights.device)[:, None] + offsets) / k
        ancestors[rows] = inverse_cdf(log_weights[rows], positions)
    return ancestors


def draw_one(log_weights: torch.Tensor, generator: Generator) -> torch.Tensor:
    """One particle index per observation `[B]`, drawn with probabilities softmax(log_weights)."""
    rows = torch.arange(log_weights.shape[0], device=log_weights.device)
    u = uniforms(rows, generator, log_weights.device)
    return inverse_cdf(log_weights, u[:, None])[:, 0]
