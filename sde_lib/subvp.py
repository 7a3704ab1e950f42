"""Sub-VP SDE (Song et al. 2021, eq. 29): the VP drift with a smaller diffusion.

dx = −½β(t)·x dt + √(β(t)(1 − a(t)⁴)) dw, with p_0t(x_t | x_0) = N(a(t)·x_0, (1 − a(t)²)²I):
the std is the VP *variance*, so it is always below the VP std. a(t) = exp(−½∫₀ᵗβ).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import torch

from sde_lib.base import SDE, sample_standard_normal, standard_normal_logp
from sde_lib.schedules import make_schedule
from sde_lib.utils import append_dims


class subVPSDE(SDE):
    """Sub-VP SDE with a "linear" (default) or "cosine" β schedule; discretised by Euler–Maruyama."""

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, N: int = 1000,
                 schedule: str = "linear", cosine_s: float = 0.008, cosine_beta_clip: float = 999.0):
        super().__init__(N)
        self.schedule_name = schedule
        self.schedule = make_schedule(schedule, beta_min, beta_max, cosine_s, cosine_beta_clip)
        self.beta_0 = float(beta_min)
        self.beta_1 = float(beta_max)

    @property
    def T(self) -> float:
        return 1.0

    def sde(self, x: torch.Tensor, t: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        beta_t = self.schedule.beta(t)
        drift = -0.5 * append_dims(beta_t, x.ndim) * x
        # 1 − a⁴ = 1 − exp(−2∫β) = −expm1(4 log a)
        discount = -torch.expm1(4 * self.schedule.log_mean_coeff(t))
        return drift, torch.sqrt(beta_t * discount)

    def marginal_coeffs(self, t: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        log_mean_coeff = self.schedule.log_mean_coeff(t)
        return torch.exp(log_mean_coeff), -torch.expm1(2 * log_mean_coeff)

    def prior_sampling(self, shape: Sequence[int], generator: Optional[torch.Generator] = None,
                       device=None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return sample_standard_normal(shape, generator, device, dtype)

    def prior_logp(self, z: torch.Tensor) -> torch.Tensor:
        return standard_normal_logp(z)

    def log_snr(self, t: torch.Tensor) -> torch.Tensor:
        """λ = log(u/(1 − u)²) with u = a² = exp(2 log a)."""
        two_lmc = 2 * self.schedule.log_mean_coeff(t)
        return two_lmc - 2 * torch.log(-torch.expm1(two_lmc))

    def ancestral_variance(self, s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """As VP, whose drift it shares: the transition's own variance v (see `SDE`)."""
        return self.transition_coeffs(s, t)[1] ** 2

    def t_from_log_snr(self, lam: torch.Tensor) -> torch.Tensor:
        # Solve e^λ(1 − u)² = u for the root u ∈ (0, 1):
        # u = 2e^λ / (2e^λ + 1 + √(4e^λ + 1)); log u is written per sign of λ to avoid overflow.
        e_neg = torch.exp(-lam.abs())
        log_u_pos = math.log(2) - torch.log(2 + e_neg + torch.sqrt(4 * e_neg + e_neg ** 2))
        log_u_neg = math.log(2) + lam - torch.log(2 * e_neg + 1 + torch.sqrt(4 * e_neg + 1))
        log_u = torch.where(lam >= 0, log_u_pos, log_u_neg)
        return self.schedule.t_from_log_mean_coeff(0.5 * log_u)
