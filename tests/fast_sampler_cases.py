"""Problems with known solutions shared by the fast-sampler tests (DDIM, Heun, DPM-Solver, ...).

- A 1-D Gaussian N(μ, s²): its probability-flow ODE is linear and maps x_T to
  x_eps = a_eps·μ + (std_eps/std_T)·(x_T − a_T·μ), std_t² = a_t²s² + σ_t² (the flow carries the
  Gaussian p_T onto the Gaussian p_eps monotonically), so ODE samplers' errors are exact.
- var → 0: a point mass, for which x̂_0 is constant and exponential integrators (DDIM,
  DPM-Solver) and EDM's Heun steps in σ̄ are exact at any step count.
- A drifting target (`DRIFT`): a score whose data prediction D = E[x_0 | x_t] is a fixed function
  g(ℓ) = e^{κℓ} of the half log-SNR ℓ = `sde.log_snr`/2, whatever x. The flow in x̄ = x/a,
  dx̄/dℓ = g(ℓ) − x̄, then has a closed-form end point, and every derivative of g enters the
  local errors with one sign, so global errors show the solvers' orders cleanly. (On the 1-D
  Gaussian the O(h³) term of a third-order multistep method integrates to ≈ 0 along the flow:
  with f = (s² + e^{−2ℓ})^{−1/2}, ∫ f·f⁽³⁾ dℓ = [f·f⁽²⁾ − (f⁽¹⁾)²/2] ≈ 0 at both ends, so order 3
  shows as ≈ 4 there and cannot be told from UniC's order 4.)
- A generator whose state tells whether a sampler drew noise after the prior sample.
"""
from __future__ import annotations

import math

import torch

from models.analytic import GaussianMixture

GAUSS_MEAN, GAUSS_VAR = 0.7, 0.3 ** 2
GAUSSIAN = GaussianMixture([1.0], [[GAUSS_MEAN]], [GAUSS_VAR])


def exact_flow(sde, x_T: torch.Tensor, eps: float, var: float = GAUSS_VAR) -> torch.Tensor:
    """The probability-flow ODE's exact end point at `eps` for N(μ, var) data, from `x_T` `[B, 1]`.

    var = 0 is a point mass at μ, where x̂_0 ≡ μ along every path.
    """
    mean_coeff, std = sde.marginal_coeffs(torch.tensor([sde.T, eps], dtype=torch.float64))
    spread = (mean_coeff ** 2 * var + std ** 2).sqrt()
    return mean_coeff[1] * GAUSS_MEAN + spread[1] / spread[0] * (x_T - mean_coeff[0] * GAUSS_MEAN)


class DriftingTarget:
    """The score s = (a·g(ℓ) − x)/σ² whose data prediction is g(ℓ) = e^{κℓ} for every x."""

    def __init__(self, kappa: float):
        self.kappa = kappa

    def score_fn(self, sde):
        def score(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            mean_coeff, std = sde.marginal_coeffs(t.double())
            target = mean_coeff * torch.exp(self.kappa * 0.5 * sde.log_snr(t.double()))
            shape = (-1,) + (1,) * (x.ndim - 1)
            return ((target.view(shape) - x.double()) / (std ** 2).view(shape)).to(x.dtype)
        return score

    def exact_flow(self, sde, x_T: torch.Tensor, eps: float) -> torch.Tensor:
        """x at eps from x_T at T: x̄_eps = e^{−(ℓ_eps − ℓ_T)}·x̄_T + ∫ e^{−(ℓ_eps − u)}·e^{κu} du."""
        times = torch.tensor([sde.T, eps], dtype=torch.float64)
        mean_coeff = sde.marginal_coeffs(times)[0].tolist()
        ell_T, ell_eps = (0.5 * sde.log_snr(times)).tolist()
        integral = (math.exp(self.kappa * ell_eps)
                    - math.exp(ell_T - ell_eps + self.kappa * ell_T)) / (1 + self.kappa)
        return mean_coeff[1] * (math.exp(ell_T - ell_eps) * x_T / mean_coeff[0] + integral)


DRIFT = DriftingTarget(kappa=0.5)


def flow_errors(sample_fn, sde, steps, eps=1e-3, batch=32, seed=0, problem=None):
    """Max |x − exact| over a batch per step count, for an ODE `sample_fn(num_steps, generator)`;
    the exact end point is the 1-D Gaussian's (`exact_flow`) or `problem.exact_flow`'s."""
    x_T = sde.prior_sampling((batch, 1), generator=torch.Generator().manual_seed(seed),
                             dtype=torch.float64)
    target = exact_flow(sde, x_T, eps) if problem is None else problem.exact_flow(sde, x_T, eps)
    errors = []
    for num_steps in steps:
        result = sample_fn(num_steps, torch.Generator().manual_seed(seed))
        errors.append((result.x - target).abs().max().item())
    return errors


def prior_only_state(sde, shape, seed, dtype=torch.float64) -> torch.Tensor:
    """The state of a generator seeded `seed` after drawing only the prior sample."""
    generator = torch.Generator().manual_seed(seed)
    sde.prior_sampling(shape, generator=generator, dtype=dtype)
    return generator.get_state()
