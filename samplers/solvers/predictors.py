"""Predictors: reverse-time steps t_i → t_{i+1} < t_i on a grid of times, as affine updates.

All SDEs here have an affine drift f = c(t)·x, so every predictor step is
    x_{i+1} = A_i·x_i + B_i·s(x_i, t_i) + C_i·z,   z ~ N(0, I),
with per-step scalars computed once for the whole grid. A predictor is a function
    predictor(sde, times, probability_flow) -> AffineSteps | None
of the SDE and the float64 times `[K + 1]` (None: no step, no score evaluation). The forward step
inverted by "reverse_diffusion" and "ancestral" is the SDE's exact transition t_{i+1} → t_i
(`sde.transition_coeffs`), x_t = r·x_s + v^½·z: on a uniform grid this is DDPM's chain for VP
(βᵢ = 1 − r²) and SMLD's for VE (σᵢ² − σᵢ₋₁² = v), and it holds on any grid and for sub-VP.
"""
from __future__ import annotations

from typing import Callable, Dict, NamedTuple, Optional

import torch

from samplers.common import CountedScore, Generator, ScoreFn, sample_noise
from sde_lib import SDE


class AffineSteps(NamedTuple):
    """Coefficients A, B, C of x ← A·x + B·s(x, t) + C·z for each of K steps (float64 `[K]`)."""
    x_coeff: torch.Tensor
    score_coeff: torch.Tensor
    noise_coeff: torch.Tensor

    def as_floats(self):
        """Per-step (A, B, C) Python floats, so that a step costs no tensor bookkeeping."""
        columns = (self.x_coeff, self.score_coeff, self.noise_coeff)
        return list(zip(*(c.tolist() for c in columns)))


def affine_step(score_fn: ScoreFn, x: torch.Tensor, t: torch.Tensor, coeffs,
                generator: Generator) -> torch.Tensor:
    """x ← A·x + B·s(x, t) + C·z for one step's floats (A, B, C) at `t` `[B]`: one evaluation."""
    x_coeff, score_coeff, noise_coeff = coeffs
    score = score_fn(x, t)
    if noise_coeff == 0:
        return x.mul(x_coeff).add_(score, alpha=score_coeff)
    # Build on the fresh noise tensor: one allocation per step.
    noise = sample_noise(x, generator)
    return noise.mul_(noise_coeff).add_(score, alpha=score_coeff).add_(x, alpha=x_coeff)


def learned_variance_step(score_fn: CountedScore, x: torch.Tensor, t: torch.Tensor,
                          coeffs, log_variances, generator: Generator) -> torch.Tensor:
    """x ← A·x + B·s + exp(½(v·log β + (1 − v)·log β̃))·z, with (s, v) from the model at `t`.

    Nichol & Dhariwal 2021, eq. 15, per element; (A, B, _) one step's floats of `ancestral`,
    (log β, log β̃) its floats of `ancestral_log_variances`. One evaluation.
    """
    x_coeff, score_coeff, _ = coeffs
    log_beta, log_posterior = log_variances
    score, v = score_fn.with_variance(x, t)
    std = torch.exp(0.5 * (v * log_beta + (1 - v) * log_posterior)).to(x.dtype)
    noise = sample_noise(x, generator)
    return noise.mul_(std).add_(score, alpha=score_coeff).add_(x, alpha=x_coeff)


Predictor = Callable[[SDE, torch.Tensor, bool], Optional[AffineSteps]]
PREDICTORS: Dict[str, Predictor] = {}
STOCHASTIC_ONLY = {"ancestral"}  # predictors with no probability-flow variant


def register_predictor(name: str):
    def decorator(fn):
        PREDICTORS[name] = fn
        return fn
    return decorator


@register_predictor("euler_maruyama")
def euler_maruyama(sde: SDE, times: torch.Tensor, probability_flow: bool = False) -> AffineSteps:
    """Euler–Maruyama on the reverse SDE (Song et al. 2021, eq. 6) or on the ODE (eq. 13).

    x ← x − [c·x − w·g²·s]·Δt + g·√Δt·z with Δt = t_i − t_{i+1}, w = 1 (SDE) or ½ (ODE, no z).
    """
    t, dt = times[:-1], times[:-1] - times[1:]
    drift, diffusion = sde.sde(torch.ones_like(t)[:, None], t)   # f(1, t) = c(t): the drift is c·x
    weight = 0.5 if probability_flow else 1.0
    noise = torch.zeros_like(dt) if probability_flow else diffusion * dt.sqrt()
    return AffineSteps(1 - drift[:, 0] * dt, weight * diffusion ** 2 * dt, noise)


@register_predictor("reverse_diffusion")
def reverse_diffusion(sde: SDE, times: torch.Tensor, probability_flow: bool = False) -> AffineSteps:
    """Reverse diffusion (Song et al. 2021, eq. 46): the reverse SDE discretised like the forward.

    The forward step x_t = x_s + f + G·z has f = (r − 1)·x_s and G = v^½ (s = t_{i+1}), so
    x_s ← x_t − f(x_t) + w·G²·s(x_t, t) + G·z, with w = 1, or w = ½ and no z for the ODE.
    """
    ratio, std = sde.transition_coeffs(times[1:], times[:-1])
    weight = 0.5 if probability_flow else 1.0
    noise = torch.zeros_like(std) if probability_flow else std
    return AffineSteps(2 - ratio, weight * std ** 2, noise)


ANCESTRAL_VARIANCES = ("beta", "posterior", "learned")


def ancestral_log_variances(sde: SDE, times: torch.Tensor):
    """Per-step log β and log β̃ (float64 `[K]`) of the step t = t_i → s = t_{i+1}.

    β = v, the transition's variance (1 − r² for VP: DDPM's βᵢ on a uniform chain);
    β̃ = σ_s²·v/σ_t², the variance of q(x_s | x_t, x_0) (Ho et al. 2020, eq. 7). Any grid.
    """
    s, t = times[1:], times[:-1]
    log_beta = 2 * torch.log(sde.transition_coeffs(s, t)[1])
    log_ratio = torch.log(sde.marginal_coeffs(s)[1]) - torch.log(sde.marginal_coeffs(t)[1])
    return log_beta, log_beta + 2 * log_ratio


@register_predictor("ancestral")
def ancestral(sde: SDE, times: torch.Tensor, probability_flow: bool = False,
              variance: Optional[str] = None) -> AffineSteps:
    """Ancestral sampling: x_s ~ N(E[x_s | x_t], `sde.ancestral_variance(s, t)`), s = t_{i+1}.

    With x_t = r·x_s + v^½·z, Tweedie's formula gives the exact mean E[x_s | x_t] = (x_t + v·s)/r:
    DDPM's (x + βᵢ·s)/√(1 − βᵢ) for VP and SMLD's x + (σᵢ² − σᵢ₋₁²)·s for VE (Song et al. 2021,
    eq. 47 and App. F). The noise variance is the SDE's: DDPM's βᵢ for VP (and sub-VP), SMLD's
    σᵢ₋₁²(σᵢ² − σᵢ₋₁²)/σᵢ², the posterior of q(x_s | x_t, x_0), for VE. On 1-D Gaussian data of
    variance 0.02 and 1000 steps, the posterior variance would leave VP's samples 2.4% too
    narrow where βᵢ leaves them 0.9% too wide. The reference code has no sub-VP step; this one
    holds for any SDE.

    `variance` overrides the SDE's choice (`ancestral_log_variances`): "beta" (the transition's
    v), "posterior" (β̃), or "learned", whose noise `learned_variance_step` sets per element
    (the steps then carry β's).
    """
    if probability_flow:
        raise ValueError("probability_flow is not defined for the ancestral predictor; "
                         "use predictor 'reverse_diffusion' or 'euler_maruyama'")
    ratio, std = sde.transition_coeffs(times[1:], times[:-1])
    if variance is None:
        noise = sde.ancestral_variance(times[1:], times[:-1]).sqrt()
    else:
        log_beta, log_posterior = ancestral_log_variances(sde, times)
        noise = torch.exp(0.5 * (log_posterior if variance == "posterior" else log_beta))
    return AffineSteps(1 / ratio, std ** 2 / ratio, noise)


@register_predictor("none")
def none(sde: SDE, times: torch.Tensor, probability_flow: bool = False) -> None:
    """No predictor (corrector-only sampling): x stays, no score evaluation."""
    return None
