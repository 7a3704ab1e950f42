"""Variance-preserving SDE (DDPM in continuous time; Song et al. 2021, eq. 11).

dx = −½β(t)·x dt + √β(t) dw, with p_0t(x_t | x_0) = N(a(t)·x_0, (1 − a(t)²)I),
a(t) = exp(−½∫₀ᵗβ), so a(t)² is DDPM's ᾱ. Its discrete chain is DDPM's ancestral chain.
"""
from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F

from sde_lib.utils import append_dims
from sde_lib.vp_family import VPFamilySDE


class VPSDE(VPFamilySDE):
    """VP SDE with schedule "linear" (β from beta_min to beta_max) or "cosine" (Nichol & Dhariwal).

    Discrete chain tables (float64, CPU, length N; index i ↔ t_i = i·T/(N−1)):
    `discrete_betas`, `alphas`, `alphas_cumprod` (ᾱᵢ), `sqrt_alphas_cumprod`,
    `sqrt_1m_alphas_cumprod` (the std of the discrete kernel).
    `cosine_s` and `cosine_beta_clip` only matter for the cosine schedule (see `CosineSchedule`).
    """

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, N: int = 1000,
                 schedule: str = "linear", cosine_s: float = 0.008, cosine_beta_clip: float = 999.0):
        super().__init__(beta_min, beta_max, N, schedule, cosine_s, cosine_beta_clip)
        self.discrete_betas = self.schedule.discrete_betas(self.N)
        self.alphas = 1.0 - self.discrete_betas
        self.alphas_cumprod = torch.cumprod(self.alphas, dim=0)
        self.sqrt_alphas_cumprod = torch.sqrt(self.alphas_cumprod)
        self.sqrt_1m_alphas_cumprod = torch.sqrt(1.0 - self.alphas_cumprod)

    def sde(self, x: torch.Tensor, t: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        drift, beta_t = self.drift_and_beta(x, t)
        return drift, torch.sqrt(beta_t)

    def marginal_coeffs(self, t: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        log_mean_coeff = self.schedule.log_mean_coeff(t)
        # std = √(1 − a²), with expm1 so that it stays accurate as t → 0.
        return torch.exp(log_mean_coeff), torch.sqrt(-torch.expm1(2 * log_mean_coeff))

    def log_snr(self, t: torch.Tensor) -> torch.Tensor:
        """λ = log(a²/(1 − a²)) = 2 log a − log(−expm1(2 log a))."""
        two_lmc = 2 * self.schedule.log_mean_coeff(t)
        return two_lmc - torch.log(-torch.expm1(two_lmc))

    def t_from_log_snr(self, lam: torch.Tensor) -> torch.Tensor:
        # a² = sigmoid(λ), so log a = −½·softplus(−λ).
        return self.schedule.t_from_log_mean_coeff(-0.5 * F.softplus(-lam))

    def discrete_marginal_coeffs(self, index: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """DDPM kernel q(x_i | x_0) = N(√ᾱᵢ·x_0, (1 − ᾱᵢ)I): (√ᾱᵢ, √(1 − ᾱᵢ))."""
        index = index.cpu()
        return self.sqrt_alphas_cumprod[index], self.sqrt_1m_alphas_cumprod[index]

    def discretize(self, x: torch.Tensor, t: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """DDPM forward step x_{i+1} = √(1 − βᵢ)·x_i + √βᵢ·z (Ho et al. 2020, eq. 2)."""
        beta = self.discrete_betas.to(x)[self.timestep_index(t).to(x.device)]
        f = append_dims(torch.sqrt(1.0 - beta) - 1.0, x.ndim) * x
        return f, torch.sqrt(beta)
