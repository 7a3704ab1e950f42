"""DDPM's variational bound on −log p(x0) in bits/dim (Ho et al. 2020; Nichol & Dhariwal 2021).

The chain is the VP SDE's DDPM tables (`sde.discrete_betas`, `alphas`, `alphas_cumprod`): table
index i ∈ {0, …, N−1} is Ho et al.'s step t = i + 1, q(x_i | x0) = N(√ᾱᵢ·x0, (1 − ᾱᵢ)I), and the
data x0 (Ho's t = 0) has no entry. Ho et al. 2020, eq. 5, in these indices:
    −log p_θ(x0) ≤ L_T + Σ_{i=1}^{N−1} L_i + L_0,
    L_T = KL(q(x_{N−1} | x0) ‖ N(0, I)),
    L_i = E_q KL(q(x_{i−1} | x_i, x0) ‖ p_θ(x_{i−1} | x_i))     (Gaussians; eqs. 6–7),
    L_0 = E_q[−log p_θ(x0 | x_0)]    (x_0 the chain at index 0; the discretized decoder, eq. 13).
p_θ(x_{i−1} | x_i) = N(μ_θ, Σ): μ_θ = (x_i − βᵢ/σᵢ·ε̂)/√αᵢ (eq. 11), ε̂ = −σᵢ·s(x_i, t),
σᵢ = √(1 − ᾱᵢ); Σ from `VARIANCES`:
    "beta":      βᵢ (Ho's σ² = β);
    "posterior": β̃ᵢ = βᵢ(1 − ᾱᵢ₋₁)/(1 − ᾱᵢ) (eq. 7), "clipped" as in Nichol & Dhariwal's code:
                 β̃₀ = 0, so index 0 (the decoder's variance) takes β̃₁;
    "learned":   exp(v·log βᵢ + (1 − v)·log β̃ᵢ) per element, v from the model (N&D 2021, eq. 15).
The decoder's variance is the chosen Σ at index 0 (Ho's code uses β̃₁ there even for "beta").
All the arithmetic is float64; per-example results are typed like x.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional, Tuple

import torch

from samplers.common import VARIANCE_NEEDED, Generator, ScoreFn, check_choice, counted
from samplers.solvers.predictors import ANCESTRAL_VARIANCES
from sde_lib import SDE, append_dims, batch_sum, randn

VARIANCES = ANCESTRAL_VARIANCES   # the reverse variances: the same choices as the sampler's
BIN_HALF_WIDTH = 1.0 / 255.0   # 256 levels on [−1, 1]: bins of width 2/255
EDGE = 0.999                   # |x| beyond this is an edge bin, open to ±∞ (as in Ho's code)
FAR = 1e10                     # a standardized bound standing for ±∞ (Φ(−FAR) = 0 in float64)
CHAIN_TABLES = ("discrete_betas", "alphas", "alphas_cumprod")
f64 = torch.float64


class VLBResult(NamedTuple):
    """The bound of `vlb_bits_per_dim`, every field in bits/dim (`[B]` unless stated).

    bpd: L_T + L_0 + Σᵢ L_i, exact or estimated; prior: L_T; decoder: L_0;
    terms: `[B, K]` the KL terms L_i at `indices` `[B, K]` (i ≥ 1; K = N − 1 when exact);
    exact: whether every term was summed; nfe: score evaluations per example (K + 1);
    stderr: standard error of `bpd` (0 when exact, NaN for K = 1).
    """
    bpd: torch.Tensor
    prior: torch.Tensor
    decoder: torch.Tensor
    terms: torch.Tensor
    indices: torch.Tensor
    exact: bool
    nfe: int
    stderr: torch.Tensor


# --- building blocks -------------------------------------------------------------------------

def normal_kl(mean1: torch.Tensor, logvar1: torch.Tensor, mean2: torch.Tensor,
              logvar2: torch.Tensor) -> torch.Tensor:
    """KL(N(mean1, e^logvar1) ‖ N(mean2, e^logvar2)) in nats, elementwise (broadcasting):
    ½[logvar2 − logvar1 + e^(logvar1 − logvar2) + (mean1 − mean2)²·e^(−logvar2) − 1]."""
    return 0.5 * (logvar2 - logvar1 + torch.exp(logvar1 - logvar2)
                  + (mean1 - mean2) ** 2 * torch.exp(-logvar2) - 1.0)


def discretized_gaussian_log_likelihood(x: torch.Tensor, mean: torch.Tensor,
                                        log_scale: torch.Tensor) -> torch.Tensor:
    """log ∫_bin(x) N(y; mean, e^(2·log_scale)) dy in nats, elementwise (Ho et al. 2020, eq. 13).

    x in [−1, 1] on 256 levels; bins of width 2/255 around x, the edge bins (|x| > 0.999) open
    to ±∞. Stable in the tails: with a, b the standardized bin bounds,
    log(Φ(b) − Φ(a)) = log Φ(b) + log(1 − e^(log Φ(a) − log Φ(b))) from `log_ndtr`, taken on
    the side of the mode where Φ is small (reflecting (a, b) → (−b, −a) when a > 0); at the
    edges it is log Φ(b) or log(1 − Φ(a)).
    """
    inv_std = torch.exp(-log_scale)
    lo = (x - mean - BIN_HALF_WIDTH) * inv_std
    hi = (x - mean + BIN_HALF_WIDTH) * inv_std
    # Edge bins: a far bound (finite, so that no gradient is NaN) makes the formula log Φ(hi)
    # or log(1 − Φ(lo)) exactly.
    lo = torch.where(x < -EDGE, torch.full_like(lo, -FAR), lo)
    hi = torch.where(x > EDGE, torch.full_like(hi, FAR), hi)
    reflect = lo > 0
    lo, hi = torch.where(reflect, -hi, lo), torch.where(reflect, -lo, hi)
    log_hi = torch.special.log_ndtr(hi)
    ratio = -torch.expm1(torch.special.log_ndtr(lo) - log_hi)      # (Φ(hi) − Φ(lo)) / Φ(hi)
    return log_hi + torch.log(ratio.clamp(min=torch.finfo(ratio.dtype).tiny))


def _table(sde: SDE, name: str, index: torch.Tensor) -> torch.Tensor:
    """Per-example chain coefficient `[B]` (float64, on index's device); see `_chain`."""
    return _chain(sde)[name][index.cpu()].to(index.device)


def _chain(sde: SDE) -> dict:
    """The float64 tables `[N]` derived from β: ᾱᵢ₋₁ (ᾱ₋₁ = 1), β̃ᵢ and its clipped log."""
    betas, alphas, abar = (getattr(sde, name).to(f64) for name in CHAIN_TABLES)
    abar_prev = torch.cat([abar.new_ones(1), abar[:-1]])
    posterior_var = betas * (1 - abar_prev) / (1 - abar)
    return dict(beta=betas, alpha=alphas, abar=abar, abar_prev=abar_prev,
                posterior_var=posterior_var,
                log_beta=torch.log(betas),
                log_posterior=torch.log(torch.cat([posterior_var[1:2], posterior_var[1:]])))


def posterior_mean_variance(sde: SDE, x0: torch.Tensor, x_t: torch.Tensor, index: torch.Tensor
                            ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q(x_{i−1} | x_i, x0) = N(μ̃, β̃ᵢ I) (Ho et al. 2020, eqs. 6–7), at chain index i `[B]`.

    μ̃ = √ᾱᵢ₋₁βᵢ/(1 − ᾱᵢ)·x0 + √αᵢ(1 − ᾱᵢ₋₁)/(1 − ᾱᵢ)·x_i. Returns μ̃ (float64, shaped like
    x0), β̃ᵢ `[B]` and the clipped log β̃ᵢ `[B]` (index 0: log β̃₁, since β̃₀ = 0). At index 0
    the "posterior" is the point x0.
    """
    index = index.to(x_t.device)
    abar, abar_prev = _table(sde, "abar", index), _table(sde, "abar_prev", index)
    coef_x0 = _table(sde, "beta", index) * abar_prev.sqrt() / (1 - abar)
    coef_xt = _table(sde, "alpha", index).sqrt() * (1 - abar_prev) / (1 - abar)
    mean = append_dims(coef_x0, x0.ndim) * x0.to(f64) + append_dims(coef_xt, x0.ndim) * x_t.to(f64)
    return mean, _table(sde, "posterior_var", index), _table(sde, "log_posterior", index)


def reverse_mean_log_variance(sde: SDE, x_t: torch.Tensor, index: torch.Tensor,
                              score: torch.Tensor, v: Optional[torch.Tensor] = None,
                              variance: str = "posterior") -> Tuple[torch.Tensor, torch.Tensor]:
    """Mean and log-variance of p_θ(x_{i−1} | x_i) at chain index i `[B]`, both float64.

    μ_θ = (x_i − βᵢ/σᵢ·ε̂)/√αᵢ with ε̂ = −σᵢ·score (Ho et al. 2020, eq. 11), i.e. (x_i + βᵢ·s)/√αᵢ.
    log Σ: log βᵢ ("beta"), clipped log β̃ᵢ ("posterior") — both `[B]` broadcast to x's ndim —
    or v·log βᵢ + (1 − v)·log β̃ᵢ elementwise ("learned", v shaped like x; N&D 2021, eq. 15).
    """
    check_choice("variance", variance, VARIANCES)
    index = index.to(x_t.device)
    beta, ndim = _table(sde, "beta", index), x_t.ndim
    mean = (x_t.to(f64) + append_dims(beta, ndim) * score.to(f64)) \
        / append_dims(_table(sde, "alpha", index).sqrt(), ndim)
    log_beta = append_dims(_table(sde, "log_beta", index), ndim)
    log_posterior = append_dims(_table(sde, "log_posterior", index), ndim)
    if variance == "beta":
        return mean, log_beta
    if variance == "posterior":
        return mean, log_posterior
    if v is None:
        raise ValueError("variance 'learned' needs the model's interpolation v (got None)")
    v = v.to(f64)
    return mean, v * log_beta + (1 - v) * log_posterior


def prior_kl(sde: SDE, x0: torch.Tensor) -> torch.Tensor:
    """L_T = KL(q(x_{N−1} | x0) ‖ N(0, I)) in nats `[B]`, typed like x0 (Ho et al. 2020, eq. 5)."""
    abar = sde.alphas_cumprod[-1].to(dtype=f64, device=x0.device)
    zero = torch.zeros((), dtype=f64, device=x0.device)
    kl = normal_kl(abar.sqrt() * x0.to(f64), torch.log1p(-abar), zero, zero)
    return batch_sum(kl).to(x0.dtype)


def vlb_term(sde: SDE, x0: torch.Tensor, x_t: torch.Tensor, index: torch.Tensor,
             score: torch.Tensor, v: Optional[torch.Tensor] = None,
             variance: str = "posterior") -> torch.Tensor:
    """The bound's term at chain index i `[B]` for x_t ~ q(x_i | x0), in nats `[B]` (typed like x0).

    i ≥ 1: KL(q(x_{i−1} | x_i, x0) ‖ p_θ(x_{i−1} | x_i)) summed over dims; i = 0: the decoder's
    −log p_θ(x0 | x_t). `score` = s(x_t, t) shaped like x_t; `v` (shaped like x_t) for
    "learned". Differentiable in `score` and `v` (pass a detached score for N&D's L_vlb term).
    """
    mean, log_var = reverse_mean_log_variance(sde, x_t, index, score, v, variance)
    post_mean, _, post_log_var = posterior_mean_variance(sde, x0, x_t, index)
    terms = batch_sum(normal_kl(post_mean, append_dims(post_log_var, x0.ndim), mean, log_var))
    rows = (index.to(x0.device) == 0).nonzero()[:, 0]   # the decoder's rows only: log Φ is slow
    if len(rows):
        log_scale = (0.5 * log_var).expand_as(mean)[rows]
        nll = -batch_sum(discretized_gaussian_log_likelihood(x0[rows].to(f64), mean[rows],
                                                             log_scale))
        terms = terms.index_put((rows,), nll)
    return terms.to(x0.dtype)


# --- the bound of a score model ----------------------------------------------------------------

def chain_time(score_fn: ScoreFn, sde: SDE, index: torch.Tensor) -> torch.Tensor:
    """The time `[B]` (float64) at which `score_fn` is evaluated for chain index `[B]`.

    The model's own `chain_time(index)` when it has one (`models.ScoreModel`); else the
    continuous time with the chain's log-SNR log(ᾱᵢ/(1 − ᾱᵢ)), where an exact continuous-time
    score (e.g. `models.analytic.GaussianMixture.score_fn`) is the exact score of the chain's
    marginal.
    """
    own = counted(score_fn).chain_time(index)
    if own is not None:
        return own
    abar = _table(sde, "abar", index)
    return sde.t_from_log_snr(torch.log(abar) - torch.log1p(-abar))


def chain_score(score_fn: ScoreFn, sde: SDE, x_t: torch.Tensor, index: torch.Tensor,
                variance: str = "posterior") -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """(score, v) of the model at x_t `[B, ...]`, chain index `[B]`; v is None unless "learned"."""
    score_fn = counted(score_fn)
    t = chain_time(score_fn, sde, index).to(device=x_t.device, dtype=x_t.dtype)
    if variance != "learned":
        return score_fn(x_t, t), None
    return score_fn.with_variance(x_t, t)


def check_chain(sde: SDE) -> None:
    """`sde` must have a valid DDPM chain: VPSDE's tables, N >= 2, every β in (0, 1)."""
    if any(not isinstance(getattr(sde, name, None), torch.Tensor) for name in CHAIN_TABLES) \
            or sde.N < 2:
        raise ValueError(
            f"the variational bound needs a discrete DDPM chain (tables {list(CHAIN_TABLES)}, "
            f"N >= 2): supported is VPSDE (schedule 'linear' or 'cosine'); got "
            f"{type(sde).__name__} (sub-VP and VE have no DDPM chain)")
    betas = sde.discrete_betas
    if not bool(((betas > 0) & (betas < 1)).all()):
        raise ValueError(f"the chain's betas must lie in (0, 1); got [{betas.min().item():.3g}, "
                         f"{betas.max().item():.3g}] (a linear schedule needs N > beta_max)")


def check_vlb_inputs(score_fn: ScoreFn, sde: SDE, x0: torch.Tensor, variance: str,
                     num_timesteps: Optional[int]) -> None:
    """Validate the arguments of `vlb_bits_per_dim` before any work (ValueError)."""
    check_chain(sde)
    check_choice("variance", variance, VARIANCES)
    if variance == "learned" and not counted(score_fn).has_variance:
        raise ValueError(VARIANCE_NEEDED)
    if not isinstance(x0, torch.Tensor) or not x0.is_floating_point() or x0.ndim < 2:
        raise ValueError("x0 must be a floating-point tensor [B, ...]")
    if x0.numel() == 0 or not bool(torch.isfinite(x0).all()) or x0.min() < -1 or x0.max() > 1:
        raise ValueError("x0 must lie in [-1, 1] (data with 256 levels, centered)")
    if num_timesteps is not None and (isinstance(num_timesteps, bool)
                                      or not isinstance(num_timesteps, int)
                                      or not 1 <= num_timesteps <= sde.N - 1):
        raise ValueError(f"num_timesteps must be None (every term) or an integer in "
                         f"1..N-1 = 1..{sde.N - 1}, got {num_timesteps!r}")


def _draw_indices(sde: SDE, batch: int, num_timesteps: Optional[int], generator: Generator,
                  device) -> torch.Tensor:
    """Chain indices `[B, K]` of the KL terms, sorted: all of 1..N−1, or K drawn per example
    uniformly without replacement (the ranks of Gaussian draws: a uniform permutation)."""
    every = torch.arange(1, sde.N, device=device)
    if num_timesteps is None:
        return every.expand(batch, -1)
    keys = randn((batch, sde.N - 1), generator, device, f64)
    return every[keys.argsort(dim=1)[:, :num_timesteps]].sort(dim=1).values


def _term(score_fn, sde, x0, index, variance, generator) -> torch.Tensor:
    """One term in nats `[B]` at chain index `[B]`, with x_i ~ q(x_i | x0) drawn from generator."""
    noise = randn(x0.shape, generator, x0.device, x0.dtype)
    mean_coeff, std = (append_dims(c.to(x0), x0.ndim) for c in sde.discrete_marginal_coeffs(index))
    x_t = mean_coeff * x0 + std * noise
    score, v = chain_score(score_fn, sde, x_t, index, variance)
    return vlb_term(sde, x0, x_t, index, score, v, variance)


@torch.no_grad()
def vlb_bits_per_dim(score_fn: ScoreFn, sde: SDE, x0: torch.Tensor, *,
                     variance: str = "posterior", num_timesteps: Optional[int] = None,
                     generator: Generator = None) -> VLBResult:
    """DDPM's bound L_T + Σ_{i=1}^{N−1} L_i + L_0 on −log₂ P(x0) per dim (Ho et al. 2020, eq. 5).

    x0 `[B, ...]` in [−1, 1] (256 levels); `sde` a VPSDE (its DDPM tables); `variance` in
    `VARIANCES` ("learned": `score_fn.forward_with_variance(x, t) -> (score, v)`). Each term draws
    its own x_i ~ q(x_i | x0) (one score evaluation), so even the full sum is a one-sample
    estimate of the expectations in L_i, as in Ho's and N&D's code. Bits/dim = nats/(D·ln 2).

    num_timesteps=None sums every term. num_timesteps=K draws, per example, K of the N − 1 KL
    indices uniformly without replacement (set S) and estimates (stratified: L_T and the decoder
    L_0, which dominates, are always computed exactly)
        L̂ = L_T + L_0 + (N − 1)/K·Σ_{i∈S} L_i,
    unbiased since P(i ∈ S) = K/(N − 1); its standard error, with the finite-population
    correction, SE = (N − 1)·√((1 − K/(N − 1))·s²/K), s² the sample variance of the K terms
    (NaN for K = 1, 0 for K = N − 1). Score evaluations are taken without autograd.
    """
    score_fn = counted(score_fn)
    check_vlb_inputs(score_fn, sde, x0, variance, num_timesteps)
    batch, num_dims = x0.shape[0], x0[0].numel()
    indices = _draw_indices(sde, batch, num_timesteps, generator, x0.device)   # [B, K]
    to_bpd = 1.0 / (num_dims * math.log(2))
    prior = prior_kl(sde, x0).to(f64)
    decoder = _term(score_fn, sde, x0, torch.zeros_like(indices[:, 0]), variance, generator)
    terms = torch.stack([_term(score_fn, sde, x0, indices[:, j], variance, generator).to(f64)
                         for j in range(indices.shape[1])], dim=1)                # [B, K] nats
    K, population = indices.shape[1], sde.N - 1
    total = prior + decoder.to(f64) + population / K * terms.sum(1)
    spread = terms.var(dim=1) if K > 1 else torch.full_like(total, float("nan"))
    stderr = population * torch.sqrt((1 - K / population) * spread / K)
    return VLBResult(*(y.to(x0.dtype) * to_bpd for y in (total, prior, decoder, terms)),
                     indices=indices, exact=K == population, nfe=K + 1,
                     stderr=(stderr * to_bpd).to(x0.dtype))
