"""The SDE of EDM's design space (Karras et al. 2022): σ(t) = t and s(t) = 1.

With s(t) = 1 and σ(t) = t, Karras et al. 2022, eq. 4 becomes dx = √(2t) dw (no drift): time *is*
the noise level, p_0t(x_t | x_0) = N(x_0, t²I), and the probability-flow ODE is
dx/dt = −t·∇ₓlog p_t(x) (their eq. 3 and 4). The process runs up to T = σ_max, where the prior is
N(0, σ_max²I) (the data's spread is neglected there, as for VE). Unlike VE, σ(0) = 0: the
marginal at t = 0 is the data itself, and `sigma_min` is not part of the process but the
smallest noise level at which to stop sampling (EDM's σ_min = 0.002): use it as the samplers'
`eps`, which is in σ units here (the samplers' default eps = 1e-3 is also valid, a level below
EDM's). Times beyond T (a log-normal training σ can exceed σ_max) are evaluated by the same
closed forms.

The discrete chain (`discretize`) has the levels σᵢ = tᵢ = i·T/(N − 1) of every SDE's chain and,
like SMLD's, the exact increments x_i = x_{i−1} + √(σᵢ² − σᵢ₋₁²)·z with σ₋₁ = 0.
"""
from __future__ import annotations

from typing import Tuple

import torch

from sde_lib.ve_family import VEFamilySDE


class EDMSDE(VEFamilySDE):
    """dx = √(2t) dw on [0, σ_max]: x_t = x_0 + t·z, prior N(0, σ_max²I) (Karras et al. 2022).

    Args:
        sigma_min: EDM's smallest sampling level (0.002); 0 < sigma_min < sigma_max.
        sigma_max: the largest level, T = σ_max (80).
        N: steps of the discrete chain (the fixed-step samplers' default step count).
    """

    def __init__(self, sigma_min: float = 0.002, sigma_max: float = 80.0, N: int = 1000):
        super().__init__(sigma_min, sigma_max, N)

    @property
    def T(self) -> float:
        return self.sigma_max

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        """σ(t) = t, shape `[B]`."""
        return t.clone()

    def sde(self, x: torch.Tensor, t: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """No drift; g(t) = √(d[σ²]/dt) = √(2t) (Karras et al. 2022, eq. 4 with s = 1)."""
        return torch.zeros_like(x), torch.sqrt(2 * t)

    def log_snr(self, t: torch.Tensor) -> torch.Tensor:
        """λ = −2 log t."""
        return -2 * torch.log(t)

    def t_from_log_snr(self, lam: torch.Tensor) -> torch.Tensor:
        """t = σ = exp(−λ/2)."""
        return torch.exp(-0.5 * lam)

    def discretize(self, x: torch.Tensor, t: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Step into level i = `timestep_index(t)`: f = 0, G = √(σᵢ² − σᵢ₋₁²), σᵢ = i·T/(N − 1).

        (σᵢ² − σᵢ₋₁²) = (2i − 1)·Δ² with Δ = T/(N − 1), and 0 at i = 0 (σ₋₁ = σ₀ = 0).
        """
        index = self.timestep_index(t).to(device=x.device, dtype=x.dtype)
        delta = self.T / max(self.N - 1, 1)
        return torch.zeros_like(x), delta * torch.sqrt((2 * index - 1).clamp(min=0))

