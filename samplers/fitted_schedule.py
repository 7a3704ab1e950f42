"""A time schedule fitted to the model: steps that equalise the local error a solver makes.

A pilot run of DPM-Solver++(3M) on a small batch (`pilot_steps` steps uniform in the half
log-SNR ℓ = `sde.log_snr`/2) records the data prediction D = E[x_0 | x_t] along each path. For an
exponential integrator of order k, the local error of a step of size h at ℓ is ∝ h^{k+1}·D^{(k)}(ℓ)
in x̄ = x/a (`samplers.multistep`), and an error made at ℓ reaches the end damped by
    P(ℓ) = exp(−∫_ℓ^{ℓ_eps} ‖ε̂‖²/d dℓ'),   ε̂ = (x̄ − D)/σ̄,
because x̄' = D − x̄ contracts perturbations at the rate 1 − ∂D/∂x̄, and for Gaussian data
1 − tr(∂D/∂x̄)/d = σ̄²·E‖∇log p̄‖²/d = E‖ε̂‖²/d (so no extra evaluation is needed). Minimising the
summed end error Σ P·h^{k+1}·|D^{(k)}| over N steps of total length ℓ_eps − ℓ_T gives the step
density ρ(ℓ) ∝ (P(ℓ)·|D^{(k)}(ℓ)|)^{1/(k+1)}, |·| the root mean square over the pilot's
samples and coordinates (the classical equidistribution of the local error; e.g. Hairer, Nørsett
& Wanner, Sec. II.4). A share `floor` of uniform density and a bound `max_ratio` on the ratio of
neighbouring steps keep multistep extrapolation stable where D barely moves (long final steps).
The grid is a schedule for any fixed-step sampler (`schedule=fit_schedule(...).times`), and the
first guess of the learned steps (`samplers.learned_steps.fit_steps`), which then minimise the
end-point error against the converged flow directly.
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Sequence

import numpy as np
import torch

from samplers.common import Generator, ScoreFn, check_eps, check_positive, check_int
from samplers.registry import SAMPLERS
from sde_lib import SDE


class FittedSchedule(NamedTuple):
    """`times` float64 `[num_steps + 1]` from T down to eps, and the pilot's score evaluations."""
    times: torch.Tensor
    nfe: int


def _pilot(score_fn, sde, shape, pilot_steps, eps, generator, device, dtype, x_T):
    """ℓ `[M]`, RMS of D's k-th differences is computed later from D `[M, B·d]`, and ‖ε̂‖²/d `[M]`."""
    records = []

    def record(i, t, x, denoised):
        records.append((t[0].item(), x.detach().to("cpu", torch.float64).flatten(1),
                        denoised.detach().to("cpu", torch.float64).flatten(1)))
    result = SAMPLERS["dpm_solver"](score_fn, sde, tuple(shape), generator=generator,
                                    device=device, dtype=dtype, order=3, num_steps=pilot_steps,
                                    eps=eps, x_T=x_T, callback=record)
    times = torch.tensor([r[0] for r in records], dtype=torch.float64)
    mean_coeff, std = sde.marginal_coeffs(times)
    x_bar = torch.stack([r[1] for r in records]) / mean_coeff[:, None, None]
    denoised = torch.stack([r[2] for r in records])
    noise = ((x_bar - denoised) * (mean_coeff / std)[:, None, None]).pow(2).mean((1, 2))
    ell = (0.5 * sde.log_snr(times)).numpy()
    return ell, x_bar.flatten(1).numpy(), denoised.flatten(1).numpy(), noise.numpy(), result.nfe


def _limit_ratios(steps: np.ndarray, max_ratio: float) -> np.ndarray:
    """Steps with every neighbouring ratio within [1/max_ratio, max_ratio], the same total."""
    log_h = np.log(steps)
    bound = np.log(max_ratio)
    for _ in range(len(steps)):
        before = log_h.copy()
        for i in range(1, len(log_h)):                        # no step much larger than the last
            log_h[i] = min(log_h[i], log_h[i - 1] + bound)
        for i in range(len(log_h) - 2, -1, -1):               # nor than the next
            log_h[i] = min(log_h[i], log_h[i + 1] + bound)
        log_h += np.log(steps.sum() / np.exp(log_h).sum())
        if np.allclose(log_h, before, rtol=0, atol=1e-12):
            break
    return np.exp(log_h)


def equidistribute(ell: np.ndarray, density: np.ndarray, num_steps: int) -> np.ndarray:
    """`num_steps + 1` points from ell[0] to ell[-1] with equal integrals of `density` between."""
    cumulative = np.concatenate([[0.0], np.cumsum(0.5 * (density[1:] + density[:-1])
                                                  * np.diff(ell))])
    return np.interp(np.linspace(0.0, cumulative[-1], num_steps + 1), cumulative, ell)


def fit_schedule(score_fn: ScoreFn, sde: SDE, shape: Sequence[int], num_steps: int, *,
                 eps: float = 1e-3, order: int = 3, pilot_steps: int = 64, floor: float = 0.05,
                 max_ratio: float = 2.5, generator: Generator = None, device=None,
                 dtype: torch.dtype = torch.float32,
                 x_T: Optional[torch.Tensor] = None) -> FittedSchedule:
    """Times `[num_steps + 1]` from T to eps fitted to `score_fn` (module docstring).

    Args:
        shape: the pilot batch `[B, ...]` (a few dozen samples suffice).
        num_steps: steps of the sampler that will use the schedule.
        eps: its last time; order: k of the local error model (the error density uses D^{(k)}).
        pilot_steps: steps of the pilot run (its NFE: pilot_steps + 1).
        floor: share of uniform density in ℓ; max_ratio: bound on neighbouring step ratios.
        generator, device, dtype, x_T: of the pilot's prior draw, as for any sampler.
    """
    eps = check_eps(sde, eps)
    num_steps = check_int("num_steps", num_steps)
    pilot_steps = check_int("pilot_steps", pilot_steps)
    if isinstance(order, bool) or order not in (1, 2, 3):
        raise ValueError(f"order must be one of [1, 2, 3], got {order!r}")
    if pilot_steps < order + 2:
        raise ValueError(f"pilot_steps must be >= order + 2 = {order + 2}, got {pilot_steps}")
    if isinstance(floor, bool) or not isinstance(floor, (int, float)) or not 0 < floor <= 1:
        raise ValueError(f"floor must be a number in (0, 1], got {floor!r}")
    if check_positive("max_ratio", max_ratio) <= 1:
        raise ValueError(f"max_ratio must be > 1, got {max_ratio!r}")
    with torch.no_grad():
        ell, _, denoised, noise, nfe = _pilot(score_fn, sde, shape, pilot_steps, eps, generator,
                                           device, dtype, x_T)
    derivative = denoised
    for _ in range(order):
        derivative = np.gradient(derivative, ell, axis=0)
    size = np.sqrt((derivative ** 2).mean(1))                                  # |D^{(k)}|
    damped = np.concatenate([[0.0], np.cumsum(0.5 * (noise[1:] + noise[:-1]) * np.diff(ell))])
    reach = np.exp(damped - damped[-1])                                          # P(ℓ)
    density = (reach * size) ** (1.0 / (order + 1))
    length = ell[-1] - ell[0]
    density = (1 - floor) * density / max(np.trapezoid(density, ell), 1e-300) + floor / length
    grid = equidistribute(ell, density, num_steps)
    steps = _limit_ratios(np.diff(grid), max_ratio) if num_steps > 1 else np.diff(grid)
    grid = ell[0] + np.concatenate([[0.0], np.cumsum(steps)])
    times = sde.t_from_log_snr(torch.from_numpy(2 * grid))
    times[0], times[-1] = sde.T, eps
    if not bool((times[1:] < times[:-1]).all()):
        raise ValueError(f"fit_schedule: num_steps={num_steps} gave non-decreasing times")
    return FittedSchedule(times, nfe)
