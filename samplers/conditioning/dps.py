"""Diffusion posterior sampling (Chung et al. 2023, Alg. 1): reverse steps plus a gradient step
on the observation's residual at the denoised estimate, any linear operator A.

At t_i, x̂_0 = (x + σ_i²·s(x, t_i)) / a_i (Tweedie; Efron 2011), r = y − A·x̂_0, and
    x_{i+1} = α_i·x + β_i·s(x, t_i) + γ_i·z − ζ·∇ₓ‖r‖,
the normalized step of the paper's App. C (ζ_i = ζ / ‖r‖ on ∇‖r‖², up to its factor 2), per
sample. It approximates p(y | x_t) by N(y; A·x̂_0(x_t), ·) (a point estimate of x_0 | x_t) and
is biased, noisy or not; the gradient goes through the score, so `score_fn` must be
differentiable (autograd), and each step costs one evaluation and its backward pass.
NFE = num_steps (+1 for `denoise`).
"""
from __future__ import annotations

import torch

from samplers.common import CountedScore, Generator, ScoreFn, data_prediction, prior_sample, \
    sample_noise, tweedie_denoise
from samplers.conditioning.operators import LinearOperator
from samplers.registry import ConditionResult
from sde_lib import SDE


def residual_gradient(score_fn: CountedScore, operator: LinearOperator, y: torch.Tensor,
                      x: torch.Tensor, t: torch.Tensor, mean_coeff: float, std: float):
    """(s(x, t), ∇ₓ‖y − A·x̂_0(x)‖ per sample), both shaped like x `[B, ...]`: one evaluation."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        score = score_fn(x, t)
        x0 = data_prediction(x, score, mean_coeff, std ** 2)
        norm = (y - operator(x0)).flatten(1).norm(dim=1)                     # [B]
        gradient, = torch.autograd.grad(norm.sum(), x)
    return score.detach(), gradient


def dps(score_fn: ScoreFn, sde: SDE, y: torch.Tensor, operator: LinearOperator, *,
        times: torch.Tensor, steps, scale: float, generator: Generator,
        denoise: bool) -> ConditionResult:
    """DPS on `times` `[N + 1]` with the predictor's per-step floats `steps`; step size ζ =
    `scale`. Returns x `[B, ...]` (not projected onto A·x = y: DPS does not reach it)."""
    counted = CountedScore(score_fn)
    mean_coeffs, stds = (c.tolist() for c in sde.marginal_coeffs(times))
    shape = (y.shape[0],) + operator.input_shape(y.shape)
    x = prior_sample(sde, shape, generator, y.device, y.dtype)
    t_x = times.to(device=x.device, dtype=x.dtype)[:, None].expand(-1, x.shape[0])
    for i, (x_coeff, score_coeff, noise_coeff) in enumerate(steps):
        score, gradient = residual_gradient(counted, operator, y, x, t_x[i], mean_coeffs[i],
                                            stds[i])
        # Reverse step, then the guidance step on the residual.
        x = sample_noise(x, generator).mul_(noise_coeff).add_(score, alpha=score_coeff) \
            .add_(x.detach(), alpha=x_coeff).sub_(gradient, alpha=scale)
    if denoise:
        x = tweedie_denoise(counted, sde, x, times[-1:].to(x.device).expand(x.shape[0]))
    return ConditionResult(x, counted.nfe)
