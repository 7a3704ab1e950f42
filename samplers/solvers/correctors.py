"""Correctors: Langevin MCMC steps x ← x + ε·∇log p_t(x) + √(2ε)·z that move x towards p_t.

A corrector is a pair (`scale`, `step`):
    scale(sde, times, snr) -> float64 `[K]`, computed once for the grid;
    step(score_fn, x, t, scale_i, n_steps, generator) -> x, with n_steps score evaluations.
"""
from __future__ import annotations

from typing import Callable, Dict, NamedTuple, Optional

import torch

from samplers.common import Generator, ScoreFn, sample_noise
from sde_lib import SDE


class Corrector(NamedTuple):
    scale: Callable[[SDE, torch.Tensor, float], torch.Tensor]
    step: Callable[..., torch.Tensor]


def langevin_alpha(sde: SDE, t: torch.Tensor) -> torch.Tensor:
    """The αᵢ of Song et al. 2021, Alg. 5, for any SDE: r², r the mean ratio of one chain step.

    r = a(t)/a(t − T/N) (`sde.transition_coeffs`), so α = 1 − βᵢ + O(N⁻²) for VP (DDPM's αᵢ),
    α = 1 for VE (Alg. 4), and for sub-VP, whose drift is VP's, the VP value. `[K]` float64.
    """
    previous = (t - sde.T / sde.N).clamp(min=0)
    ratio, _ = sde.transition_coeffs(previous, t)
    return ratio ** 2


def _langevin_scale(sde: SDE, times: torch.Tensor, snr: float) -> torch.Tensor:
    return 2 * langevin_alpha(sde, times) * snr ** 2


def _langevin_step(score_fn: ScoreFn, x: torch.Tensor, t: torch.Tensor, scale: float, n_steps: int,
                   generator: Generator) -> torch.Tensor:
    """Song et al. 2021, Alg. 4 (VE) / 5 (VP): ε = 2α·(snr·‖z‖/‖s‖)², `scale` = 2α·snr².

    As in the reference code, ‖z‖ and ‖s‖ are averages of per-sample norms over the batch: a
    per-sample ratio is heavy-tailed in low dimension (‖s(x)‖ → 0 at a mode) and biases the chain.
    """
    for _ in range(n_steps):
        score = score_fn(x, t)
        noise = sample_noise(x, generator)
        noise_norm = torch.linalg.vector_norm(noise.flatten(1), dim=1).mean()
        score_norm = torch.linalg.vector_norm(score.flatten(1), dim=1).mean()
        step = scale * (noise_norm / score_norm).item() ** 2
        x = x.add(score, alpha=step).add_(noise, alpha=(2 * step) ** 0.5)
    return x


def _ald_scale(sde: SDE, times: torch.Tensor, snr: float) -> torch.Tensor:
    _, std = sde.marginal_coeffs(times)
    return 2 * langevin_alpha(sde, times) * (snr * std) ** 2


def langevin_steps(score_fn: ScoreFn, x: torch.Tensor, t: torch.Tensor, scale: float, n_steps: int,
                   generator: Generator) -> torch.Tensor:
    """`n_steps` Langevin steps of the fixed size ε = `scale` at time `t` `[B]`."""
    for _ in range(n_steps):
        noise = sample_noise(x, generator)
        x = x.add(score_fn(x, t), alpha=scale).add_(noise, alpha=(2 * scale) ** 0.5)
    return x


CORRECTORS: Dict[str, Optional[Corrector]] = {
    # Langevin corrector (Song et al. 2021, Alg. 4/5): ε = 2α(snr·‖z‖/‖s‖)², α = `langevin_alpha`
    # (1 − βᵢ for VP, 1 for VE, the VP value for sub-VP).
    "langevin": Corrector(_langevin_scale, _langevin_step),
    # Annealed Langevin dynamics (Song & Ermon 2019, Alg. 1, whose step αᵢ is 2ε here) with the
    # step tied to the noise level, ε = 2α(snr·σ_t)², as Song et al.'s NCSN configurations use it.
    "ald": Corrector(_ald_scale, langevin_steps),
    "none": None,
}
