"""The problems and the error metric of benchmarks/peers.py (the sampler frontier).

A 16-D, 8-component Gaussian mixture with small component variances (standard deviations
0.03–0.1 on means spread over [−1, 1]: well-separated, sharp modes, as image data at the end of
sampling), diffused by VP, sub-VP or VE. Its exact score makes every error the sampler's.

Error: every method returns the data prediction at the last time eps (Tweedie's E[x_0 | x_eps],
the step to σ = 0 that k-diffusion and diffusers take last), from the same prior draw. Samples
are assigned to the component of largest responsibility under p_eps; within component k with
variances v_kd, E[x_0 | x_eps] of exact x_eps has variance v_kd²/(v_kd + σ̄_eps²) per
coordinate (σ̄ = σ/a; exact for a lone Gaussian component, and the components are far apart), so
    r_k = mean_d(v̂_kd / (v_kd²/(v_kd + σ̄²))) − 1,   error = √(mean_k r_k²)
(the per-component variance error: blur or over-sharpening of the modes, what few-step samplers
get wrong). Its floor, the error of exact samples of the same size, is printed with the tables.
"""
from __future__ import annotations

import math

import torch

import sde_lib
from models.analytic import GaussianMixture

DIM, COMPONENTS, EPS = 16, 8, 1e-3
SDES = {"vp": sde_lib.VPSDE, "subvp": sde_lib.subVPSDE, "ve": sde_lib.VESDE}


def sharp_mixture() -> GaussianMixture:
    """8 components in 16-D: means uniform in [−1, 1], std log-uniform in [0.03, 0.1] per coordinate."""
    generator = torch.Generator().manual_seed(16)
    means = 2 * torch.rand(COMPONENTS, DIM, generator=generator, dtype=torch.float64) - 1
    log_std = torch.empty(COMPONENTS, DIM, dtype=torch.float64).uniform_(
        math.log(0.03), math.log(0.1), generator=generator)
    weights = 0.5 + torch.rand(COMPONENTS, generator=generator, dtype=torch.float64)
    return GaussianMixture(weights / weights.sum(), means, torch.exp(2 * log_std))


MIXTURE = sharp_mixture()


def noise_to_signal(sde, t: float) -> float:
    """σ̄(t) = σ/a."""
    mean_coeff, std = sde.marginal_coeffs(torch.tensor([t], dtype=torch.float64))
    return (std / mean_coeff).item()


def component_of(x: torch.Tensor, sde, t: float = EPS) -> torch.Tensor:
    """Index `[n]` of the component of largest responsibility under p_t, for data-scale x `[n, d]`
    (denoised samples: their responsibilities are taken at x itself under p_t, far apart modes)."""
    mixture = MIXTURE
    mean_coeff, std = sde.marginal_coeffs(torch.tensor([t], dtype=torch.float64))
    var = mean_coeff ** 2 * mixture.variances + std ** 2                       # [K, d]
    diff = x.double()[:, None, :] * mean_coeff - mean_coeff * mixture.means      # [n, K, d]
    log_joint = torch.log(mixture.weights) - 0.5 * (diff ** 2 / var + torch.log(var)).sum(-1)
    return log_joint.argmax(1)


def variance_error(x: torch.Tensor, sde, eps: float = EPS) -> float:
    """The per-component variance error of denoised samples `x` `[n, d]` (module docstring)."""
    x = x.double()
    if not bool(torch.isfinite(x).all()):
        return float("nan")
    labels = component_of(x, sde, eps)
    sigma_bar2 = noise_to_signal(sde, eps) ** 2
    target = MIXTURE.variances ** 2 / (MIXTURE.variances + sigma_bar2)        # [K, d]
    ratios = []
    for k in range(COMPONENTS):
        members = x[labels == k]
        if len(members) < 3:
            return float("inf")
        ratios.append((members.var(0) / target[k]).mean() - 1)
    return torch.stack(ratios).pow(2).mean().sqrt().item()


def prior_draw(sde, n: int, seed: int = 0) -> torch.Tensor:
    """The shared starting state x_T `[n, d]` (float64)."""
    return sde.prior_sampling((n, DIM), generator=torch.Generator().manual_seed(seed),
                              dtype=torch.float64)


def exact_floor(sde, n: int, seed: int = 1) -> float:
    """The error of n exact samples of p_eps, denoised: the metric's statistical floor."""
    generator = torch.Generator().manual_seed(seed)
    x0 = MIXTURE.sample(n, generator)
    mean, std = sde.marginal_prob(x0, torch.full((n,), EPS, dtype=torch.float64))
    x = mean + std[:, None] * torch.randn(x0.shape, generator=generator, dtype=torch.float64)
    return variance_error(denoise(x, sde), sde)


def denoise(x: torch.Tensor, sde, t: float = EPS) -> torch.Tensor:
    """E[x_0 | x_t] by the exact score (one evaluation)."""
    tt = torch.full((x.shape[0],), t, dtype=torch.float64)
    mean_coeff, std = sde.marginal_coeffs(tt)
    return (x + std[:, None] ** 2 * MIXTURE.score(x, tt, sde)) / mean_coeff[:, None]


def variance_error_vs(x: torch.Tensor, reference: torch.Tensor, sde, eps: float = EPS) -> float:
    """The per-component variance error of `x` against `reference` samples transported from the
    same x_T (the converged probability-flow ODE's): r_k = mean_d(v̂_kd / v̂^ref_kd) − 1, each set
    split by its own components. Most of the statistical floor cancels: what remains is the
    solver's error (and, for stochastic samplers, their own sampling noise)."""
    x, reference = x.double(), reference.double()
    if not bool(torch.isfinite(x).all()):
        return float("nan")
    labels, labels_ref = component_of(x, sde, eps), component_of(reference, sde, eps)
    ratios = []
    for k in range(COMPONENTS):
        if int((labels == k).sum()) < 3:
            return float("inf")
        ratios.append((x[labels == k].var(0) / reference[labels_ref == k].var(0)).mean() - 1)
    return torch.stack(ratios).pow(2).mean().sqrt().item()
