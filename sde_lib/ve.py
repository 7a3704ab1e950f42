"""Variance-exploding SDE (SMLD / NCSN in continuous time; Song et al. 2021, eq. 9).

dx = √(d[σ²(t)]/dt) dw with σ(t) = σ_min(σ_max/σ_min)ᵗ, so g(t) = σ(t)√(2 log(σ_max/σ_min)).
As in the reference code, p_0t(x_t | x_0) = N(x_0, σ(t)²I) (σ_min² is not subtracted),
and the prior is N(0, σ_max²I).
"""
from __future__ import annotations

import math
from typing import Tuple

import torch

from sde_lib.ve_family import VEFamilySDE


class VESDE(VEFamilySDE):
    """VE SDE; `discrete_sigmas` (float64, increasing, length N) are the SMLD noise levels."""

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0, N: int = 1000):
        super().__init__(sigma_min, sigma_max, N)
        self._log_ratio = math.log(self.sigma_max / self.sigma_min)
        self.discrete_sigmas = torch.exp(torch.linspace(
            math.log(self.sigma_min), math.log(self.sigma_max), self.N, dtype=torch.float64))

    @property
    def T(self) -> float:
        return 1.0

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        """σ(t) = σ_min(σ_max/σ_min)ᵗ, shape `[B]`."""
        return self.sigma_min * torch.exp(t * self._log_ratio)

    def sde(self, x: torch.Tensor, t: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        diffusion = self.sigma(t) * math.sqrt(2 * self._log_ratio)
        return torch.zeros_like(x), diffusion

    def log_snr(self, t: torch.Tensor) -> torch.Tensor:
        """λ = −2 log σ(t)."""
        return -2 * (math.log(self.sigma_min) + t * self._log_ratio)

    def t_from_log_snr(self, lam: torch.Tensor) -> torch.Tensor:
        return (-0.5 * lam - math.log(self.sigma_min)) / self._log_ratio

    def discrete_marginal_coeffs(self, index: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """SMLD kernel N(x_0, σᵢ²I): (1, σᵢ)."""
        sigma = self.discrete_sigmas[index.cpu()]
        return torch.ones_like(sigma), sigma

    def discretize(self, x: torch.Tensor, t: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """SMLD forward step x_{i+1} = x_i + √(σᵢ² − σᵢ₋₁²)·z, with σ₋₁ = 0 (Song et al. 2021, eq. 8)."""
        index = self.timestep_index(t).to(x.device)
        sigmas = self.discrete_sigmas.to(x)
        sigma = sigmas[index]
        previous = torch.where(index == 0, torch.zeros_like(sigma), sigmas[(index - 1).clamp(min=0)])
        return torch.zeros_like(x), torch.sqrt(sigma ** 2 - previous ** 2)
