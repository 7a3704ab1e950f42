"""Sequential Monte Carlo conditioning on a linear observation: exact as the particles grow.

The model. On the grid T = t_0 > t_1 > … > t_N = eps the unconditional sampler (a stochastic
predictor of `PREDICTORS`) is a Markov chain with Gaussian kernels
    x_0 ~ p_T,    p_i(x' | x) = N(x'; m_i(x), γ_i²·I),    m_i(x) = α_i·x + β_i·s(x, t_i),
whose law of x_N is the model p^θ (→ p_eps as N → ∞ with the exact score). Given an
observation y = A·x_N + σ_y·n, n ~ N(0, I), the target is the posterior
    π(x_N) ∝ p^θ(x_N)·N(y; A·x_N, σ_y²·I),
and for σ_y = 0 the conditional p^θ(x_N | A·x_N = y) (density on the affine set A·x = y).

Twisting functions: the observation diffused by the forward kernel, as MCGdiff (Cardoso et al.
2023, noiseless) and FPS (Dou & Song 2024, noisy) build their intermediate observations; the
twisted diffusion sampler (Wu et al. 2023) instead evaluates the likelihood at Tweedie's
estimate of x_0, available here as the resampling look-ahead "tweedie" below. The transition
eps → t_i is x_{t_i} = ρ_i·x_eps + v_i·ζ (`sde.transition_coeffs`), so A·x_eps = y − σ_y·n gives
A·x_{t_i} = ρ_i·y − ρ_i·σ_y·n + v_i·A·ζ, and
    h_i(x) = N(ρ_i·y; A·x, C_i),    C_i = v_i²·AAᵀ + ρ_i²σ_y²·I,
with h_N(x) = N(y; A·x, σ_y²·I) the true likelihood (ρ_N = 1, v_N = 0; δ(A·x − y) if σ_y = 0).
The SMC targets are γ_i(x_{0:i}) = p_T(x_0)·Π_{j<i} p_j(x_{j+1} | x_j)·h_i(x_i); γ_N's marginal
in x_N is π, whatever the intermediate h_i.

Proposal and weights (fully adapted; Pitt & Shephard 1999). x_{i+1} is drawn from the kernel
times the next twist, q_i(x' | x) ∝ p_i(x' | x)·h_{i+1}(x'), a Gaussian sampled exactly by
Matheron's rule: x'' = m_i(x) + γ_i·z, e ~ N(0, C_{i+1}) (as v·A·ζ + ρσ_y·ξ), and
    x' = x'' + γ_i²·Aᵀ·S_i⁻¹·(ρ_{i+1}·y − A·x'' − e),
    S_i = (γ_i² + v_{i+1}²)·AAᵀ + ρ_{i+1}²σ_y²·I.
The incremental weight γ_{i+1} / (γ_i·q_i) is G_i(x_i) = L_i(x_i) / h_i(x_i), with the predictive
L_i(x) = ∫ p_i(x' | x)·h_{i+1}(x') dx' = N(ρ_{i+1}·y; A·m_i(x), S_i). It depends on x_i only, so the
particles are weighted and resampled before they move; the initial weight h_0(x_0) cancels
against the first denominator. For σ_y = 0 the last proposal is the kernel conditioned on
A·x' = y (the same formula with C_N = 0, a projection) and L_{N−1} is the density of A·x' at y.
S_i and C_i are shared by all particles, so their normalizing constants drop out of the
normalized weights: only (α·AAᵀ + β·I)⁻¹ (`LinearOperator.gram_solve`) is needed, and noiseless
observations need A of full row rank.

Consistency. This is a sequential importance sampler with resampling for the Feynman–Kac model
(γ_i) (Del Moral 2004; Chopin & Papaspiliopoulos 2020, ch. 10-11). Each potential has a finite
expectation under its proposal, E_q[G_i] = ∫ p_{i−1}(x | x_{i−1})·L_i(x) dx / L_{i−1}(x_{i−1})
≤ sup L_i / L_{i−1}(x_{i−1}) < ∞ (L_i is a Gaussian density of fixed covariance), which is what
weighted samples need to stay consistent through mutation, weighting and multinomial or
systematic resampling (Douc & Moulines 2008). So for any fixed grid, the weighted particles
(x_N^k, W^k) estimate π(φ) = E_π[φ(x_N)] consistently as K → ∞, with O(1/K) bias and variance
when the potentials have second moments, and a draw with probabilities W^k is asymptotically
distributed as π. The only remaining error is the model's, p^θ against p_eps (the step count);
replacement (`samplers.conditioning.replacement`), RePaint and DPS carry a bias that no K removes. With one
particle the sampler is the guided proposal alone (biased).

Resampling weights (`lookahead`). Resampling may use any positive look-ahead λ_i(x_i) on top of
the weights, if the survivors then carry 1/λ_i (auxiliary particle filter; Pitt & Shephard 1999):
consistency is unchanged, only which particles are duplicated. "predictive" (the default) takes
λ_i = 1, i.e. the fully adapted weights above. "tweedie" takes λ_i = h̃_i(x_i) / L_i(x_i) with
h̃_i(x) = N(y; A·x̂_0(x), r_i²·AAᵀ + σ_y²·I), x̂_0 = (x + σ_i²·s(x, t_i))/a_i (Tweedie, from the
score the step evaluates anyway) and r_i² = c²σ_i²/(a_i²c² + σ_i²), the exact p(y | x_t) for data
N(·, c²I), c = `data_std` (the twist of Wu et al. 2023 with this variance): resampling then
follows the model's own guess of x_0 rather than the diffused observation.

Finite K. The twists are not p(y | x_t), so the intermediate targets give the modes of a
multimodal posterior the wrong masses, and the last steps' weights must correct them: the
estimator stays consistent, with a large asymptotic variance and a bias that decays slowly in K.
Measured on MIXTURE_2D (VP, exact score) observed through x₁ in the tails of both modes: where
the posterior gives each mode ½, the intermediate targets give one of them 3-7% around
σ_t ≈ 0.2, and it regains its weight only in the last steps (σ_t < 0.15). Against the chain's
own posterior (importance sampling of unconditional draws of the same chain; exact for it),
the weighted estimate of P(x₂ < 0.25 | y), averaged over independent runs, is off by
    12 steps, noisy y = 0.8, σ_y = 0.5:  +0.042 ± 0.004 (K = 16), +0.005 ± 0.004 (K = 1024)
    200 steps, same:  +0.054, +0.036, +0.012, −0.007 (± 0.007, 0.010, 0.011, 0.029) for
                      K = 64, 256, 1024, 4096 (chain posterior 0.503 ± 0.002, exact 0.500)
(tests/test_condition.py, benchmarks/smc_convergence.py). Noiseless x₁ = 1.1283 (exact 0.497)
is slower: 0.38, 0.42, 0.35, 0.46, 0.44 for K = 64 … 16384 on 200 steps (± 0.013 … 0.034), the
same from 1000 to 4000 steps, while sequential importance sampling (`ess_threshold` 0, no
resampling) gives 0.47 ± 0.012 and 0.51 ± 0.022 at K = 64 and 256: resampling by the
intermediate targets commits particles to their mode masses. Where x₁ selects one mode, or the
observation is not in the modes' tails, K = 4-16 already match the exact law
(benchmarks/conditioning.py). The weights themselves are checked exactly against a Gaussian
chain (tests/test_condition.py).

Cost: one score evaluation per particle and step, batched over B·K rows, so K× an
unconditional run; `nfe` counts the batched calls (num_steps, plus one for `denoise`, which
denoises the drawn particle only).
"""
from __future__ import annotations

import torch

from samplers.common import (CountedScore, Generator, ScoreFn, data_prediction, prior_sample,
                             tweedie_denoise)
from samplers.conditioning.operators import LinearOperator, inner
from samplers.conditioning.particles import draw_one, effective_sample_size, systematic_resample
from samplers.registry import ConditionResult
from sde_lib import SDE, randn


class TwistedKernel:
    """One step's reverse kernel N(mean, γ²I) for B·K particles, twisted by h_{i+1}."""

    def __init__(self, operator: LinearOperator, y: torch.Tensor, mean: torch.Tensor,
                 noise_coeff: float, ratio: float, spread: float, noise_std: float):
        self.operator, self.y, self.mean = operator, y, mean
        self.gamma, self.ratio, self.spread = noise_coeff, ratio, spread
        self.obs_std = ratio * noise_std
        # S = α·AAᵀ + β·I, the covariance of ρ·y − A·x' under the kernel and the twist.
        self.alpha, self.beta = noise_coeff ** 2 + spread ** 2, self.obs_std ** 2

    def log_predictive(self) -> torch.Tensor:
        """log L(x) up to a constant: −½‖ρ·y − A·m‖²_{S⁻¹}, float64 `[B·K]`."""
        residual = self.ratio * self.y - self.operator(self.mean)
        return -0.5 * inner(residual, self.operator.gram_solve(residual, self.alpha, self.beta))

    def propose(self, ancestors: torch.Tensor, generator: Generator, batch: int) -> torch.Tensor:
        """x' ~ q(x' | x) ∝ N(x'; m, γ²I)·h(x') for the resampled `ancestors` (flat `[B·K]`)."""
        mean, shape = self.mean[ancestors], self.mean.shape
        x = mean.add_(particle_noise(mean, batch, generator), alpha=self.gamma)  # x'' ~ kernel
        innovation = self.ratio * self.y - self.operator(x)
        if self.spread > 0:                                                 # e ~ N(0, C)
            innovation -= self.spread * self.operator(particle_noise(mean, batch, generator))
        if self.obs_std > 0:
            innovation -= self.obs_std * particle_noise(self.y, batch, generator)
        gain = self.operator.transpose(self.operator.gram_solve(innovation, self.alpha, self.beta))
        return x.add_(gain.reshape(shape), alpha=self.gamma ** 2)


def particle_noise(like: torch.Tensor, batch: int, generator: Generator) -> torch.Tensor:
    """N(0, I) shaped like `like` `[B·K, ...]`; observation b's K rows from generator b."""
    shape = (batch, like.shape[0] // batch) + tuple(like.shape[1:])
    return randn(shape, generator, like.device, like.dtype).flatten(0, 1)


def log_twist(operator: LinearOperator, y: torch.Tensor, x: torch.Tensor, ratio: float,
              spread: float, noise_std: float) -> torch.Tensor:
    """log h(x) up to a constant: −½‖A·x − ρ·y‖²_{C⁻¹}, C = v²·AAᵀ + ρ²σ_y²·I; float64 `[B·K]`."""
    residual = operator(x) - ratio * y
    return -0.5 * inner(residual, operator.gram_solve(residual, spread ** 2,
                                                      (ratio * noise_std) ** 2))


class TweedieLookahead:
    """log h_i(x) = log N(y; A·x̂_0, r_i²·AAᵀ + σ_y²·I) up to a constant, float64 `[B·K]`, with
    x̂_0 = (x + σ_i²·s(x, t_i)) / a_i (Tweedie; the score the step evaluates anyway) and
    r_i² = c²σ_i² / (a_i²c² + σ_i²), Var[x_0 | x_t] for data N(·, c²·I), c = `data_std`: the
    exact p(y | x_t) for such data (Wu et al. 2023's twist, with this variance)."""

    def __init__(self, sde: SDE, times: torch.Tensor, operator: LinearOperator, y: torch.Tensor,
                 noise_std: float, data_std: float):
        self.mean_coeffs, self.stds = (c.tolist() for c in sde.marginal_coeffs(times))
        self.operator, self.y, self.noise_std, self.data_std = operator, y, noise_std, data_std

    def __call__(self, x: torch.Tensor, score: torch.Tensor, i: int) -> torch.Tensor:
        a, std, c = self.mean_coeffs[i], self.stds[i], self.data_std
        residual = self.y - self.operator(data_prediction(x, score, a, std ** 2))
        spread = c ** 2 * std ** 2 / (a ** 2 * c ** 2 + std ** 2)
        return -0.5 * inner(residual, self.operator.gram_solve(residual, spread,
                                                               self.noise_std ** 2))


def smc(score_fn: ScoreFn, sde: SDE, y: torch.Tensor, operator: LinearOperator, *,
        noise_std: float, times: torch.Tensor, steps, num_particles: int, ess_threshold: float,
        lookahead: str, data_std: float, generator: Generator, denoise: bool) -> ConditionResult:
    """Draw one x `[B, ...]` per observation y `[B, ...]` by SMC with `num_particles` K each.

    `steps`: the predictor's per-step floats (α_i, β_i, γ_i) on `times` `[N + 1]` (float64);
    resampling (systematic) when an observation's ESS falls below `ess_threshold`·K, with the
    predictive weights (`lookahead` "predictive") or the Tweedie look-ahead of `data_std`
    ("tweedie"; module docstring).
    """
    batch, k = y.shape[0], num_particles
    rows = [b for b in range(batch) for _ in range(k)]
    counted = CountedScore(score_fn)
    particle_score, op = counted.select_rows(rows), operator.select_rows(rows)
    y_rows = y.repeat_interleave(k, dim=0)                                  # [B·K, ...]
    ratios, spreads = (c.tolist() for c in sde.transition_coeffs(
        torch.full_like(times, times[-1].item()), times))                  # ρ_i, v_i
    x_shape = (batch, k) + operator.input_shape(y.shape)
    x = prior_sample(sde, x_shape, generator, y.device, y.dtype).flatten(0, 1)
    t_x = times.to(device=x.device, dtype=x.dtype)[:, None].expand(-1, x.shape[0])
    log_w = torch.zeros(batch, k, dtype=torch.float64, device=y.device)
    log_h = torch.zeros(batch * k, dtype=torch.float64, device=y.device)   # h_0 cancels
    offsets = k * torch.arange(batch, device=y.device)[:, None]
    look = None if lookahead == "predictive" else \
        TweedieLookahead(sde, times, op, y_rows, noise_std, data_std)
    ess_history, resampled_history = [], []
    for i, (x_coeff, score_coeff, noise_coeff) in enumerate(steps):
        score = particle_score(x, t_x[i])
        mean = x.mul(x_coeff).add_(score, alpha=score_coeff)
        kernel = TwistedKernel(op, y_rows, mean, noise_coeff, ratios[i + 1], spreads[i + 1],
                               noise_std)
        # Weight by the potential G_i = L_i / h_i, then resample where the ESS is low, by the
        # weights times the look-ahead ratio λ_i (1 for "predictive"); survivors carry 1/λ_i.
        log_predictive = kernel.log_predictive()
        log_w += (log_predictive - log_h).view(batch, k)
        log_ratio = torch.zeros_like(log_w) if look is None else \
            (look(x, score, i) - log_predictive).view(batch, k)
        ess = effective_sample_size(log_w + log_ratio)
        resample = ess < ess_threshold * k
        ancestors = systematic_resample(log_w + log_ratio, resample, generator)
        log_w = torch.where(resample[:, None], -log_ratio.gather(1, ancestors), log_w)
        ess_history.append(ess)
        resampled_history.append(resample)
        x = kernel.propose((ancestors + offsets).flatten(), generator, batch)
        if i + 1 < len(steps):
            log_h = log_twist(op, y_rows, x, ratios[i + 1], spreads[i + 1], noise_std)
    log_w = torch.log_softmax(log_w, dim=1)
    particles = x.view(x_shape)
    chosen = particles[torch.arange(batch, device=y.device), draw_one(log_w, generator)]
    if denoise:
        t_last = times[-1:].to(chosen.device).expand(batch)
        chosen = tweedie_denoise(counted, sde, chosen, t_last)
        if noise_std == 0:
            chosen = operator.project_onto(chosen, y)
    return ConditionResult(chosen, counted.nfe, torch.stack(ess_history),
                           torch.stack(resampled_history), particles, log_w)
