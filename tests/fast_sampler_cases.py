"""Problems with known solutions shared by the fast-sampler tests (DDIM, Heun, DPM-Solver, ...).

- A 1-D Gaussian N(μ, s²): its probability-flow ODE is linear and maps x_T to
  x_eps = a_eps·μ + (std_eps/std_T)·(x_T − a_T·μ), std_t² = a_t²s² + σ_t² (the flow carries the
  Gaussian p_T onto the Gaussian p_eps monotonically), so ODE samplers' errors are exact.
- var → 0: a point mass, for which x̂_0 is constant and exponential integrators (DDIM,
  DPM-Solver) and EDM's Heun steps in σ̄ are exact at any step count.
- A generator whose state tells whether a sampler drew noise after the prior sample.
"""
from __future__ import annotations

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


def flow_errors(sample_fn, sde, steps, eps=1e-3, batch=32, seed=0):
    """Max |x − exact| over a batch per step count, for an ODE `sample_fn(num_steps, generator)`."""
    x_T = sde.prior_sampling((batch, 1), generator=torch.Generator().manual_seed(seed),
                             dtype=torch.float64)
    target = exact_flow(sde, x_T, eps)
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
