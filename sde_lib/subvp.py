"""Sub-VP SDE (Song et al. 2021, eq. 29): the VP drift with a smaller diffusion.

dx = −½β(t)·x dt + √(β(t)(1 − a(t)⁴)) dw, with p_0t(x_t | x_0) = N(a(t)·x_0, (1 − a(t)²)²I):
the std is the VP *variance*, so it is always below the VP std. a(t) = exp(−½∫₀ᵗβ).
"""
from __future__ import annotations

import math
from typing import Tuple

import torch

from sde_lib.vp_family import VPFamilySDE


class subVPSDE(VPFamilySDE):
    """Sub-VP SDE with a "linear" (default) or "cosine" β schedule; discretised by Euler–Maruyama.

    Arguments as `VPSDE` (beta_min, beta_max, N, schedule, cosine_s, cosine_beta_clip).
    """

    def sde(self, x: torch.Tensor, t: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        drift, beta_t = self.drift_and_beta(x, t)
        # 1 − a⁴ = 1 − exp(−2∫β) = −expm1(4 log a)
        discount = -torch.expm1(4 * self.schedule.log_mean_coeff(t))
        return drift, torch.sqrt(beta_t * discount)

    def marginal_coeffs(self, t: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        log_mean_coeff = self.schedule.log_mean_coeff(t)
        return torch.exp(log_mean_coeff), -torch.expm1(2 * log_mean_coeff)

    def log_snr(self, t: torch.Tensor) -> torch.Tensor:
        """λ = log(u/(1 − u)²) with u = a² = exp(2 log a)."""
        two_lmc = 2 * self.schedule.log_mean_coeff(t)
        return two_lmc - 2 * torch.log(-torch.expm1(two_lmc))

    def t_from_log_snr(self, lam: torch.Tensor) -> torch.Tensor:
        # Solve e^λ(1 − u)² = u for the root u ∈ (0, 1):
        # u = 2e^λ / (2e^λ + 1 + √(4e^λ + 1)); log u is written per sign of λ to avoid overflow.
        e_neg = torch.exp(-lam.abs())
        log_u_pos = math.log(2) - torch.log(2 + e_neg + torch.sqrt(4 * e_neg + e_neg ** 2))
        log_u_neg = math.log(2) + lam - torch.log(2 * e_neg + 1 + torch.sqrt(4 * e_neg + 1))
        log_u = torch.where(lam >= 0, log_u_pos, log_u_neg)
        return self.schedule.t_from_log_mean_coeff(0.5 * log_u)
