"""Noise schedules β(t) of the variance-preserving family, with their integrals.

A schedule gives β(t) and the log mean coefficient log a(t) = −½∫₀ᵗ β(s) ds, so that
ᾱ(t) = a(t)² in DDPM notation, and inverts the latter (needed by `t_from_log_snr`).
"""
from __future__ import annotations

import math

import torch


class LinearSchedule:
    """β(t) = β_min + t(β_max − β_min) (Song et al. 2021, VP SDE); log a(t) = −¼t²Δβ − ½tβ_min."""

    def __init__(self, beta_min: float, beta_max: float):
        if not 0 <= beta_min < beta_max:
            raise ValueError(
                f"beta_min and beta_max must satisfy 0 <= beta_min < beta_max, "
                f"got beta_min={beta_min!r}, beta_max={beta_max!r}")
        self.beta_0 = float(beta_min)
        self.beta_1 = float(beta_max)

    def beta(self, t: torch.Tensor) -> torch.Tensor:
        return self.beta_0 + t * (self.beta_1 - self.beta_0)

    def log_mean_coeff(self, t: torch.Tensor) -> torch.Tensor:
        return -0.25 * t ** 2 * (self.beta_1 - self.beta_0) - 0.5 * t * self.beta_0

    def t_from_log_mean_coeff(self, log_mean_coeff: torch.Tensor) -> torch.Tensor:
        # Solve ¼Δβ·t² + ½β_min·t = c (c = −log a ≥ 0), rationalised so that Δβ → 0 is stable.
        c = -log_mean_coeff
        half_b0 = 0.5 * self.beta_0
        return 2 * c / (half_b0 + torch.sqrt(half_b0 ** 2 + (self.beta_1 - self.beta_0) * c))

    def discrete_betas(self, N: int) -> torch.Tensor:
        """DDPM chain: βᵢ = β_min/N + i(β_max − β_min)/(N(N−1)), i = 0 … N−1 (float64)."""
        return torch.linspace(self.beta_0 / N, self.beta_1 / N, N, dtype=torch.float64)


class CosineSchedule:
    """Nichol & Dhariwal (2021): ᾱ(t) = f(t)/f(0), f(t) = cos²(θ(t)), θ(t) = (t + s)/(1 + s)·π/2.

    As an SDE, β(t) = −d log ᾱ/dt = π·tan θ(t)/(1 + s), which diverges at t = 1. We clip it at
    `beta_clip`: past t_c (where β(t_c) = beta_clip) β stays constant, so ᾱ keeps decaying
    exponentially and the prior is reached with a finite drift (with the default 999,
    t_c ≈ 0.998 and ᾱ(1) ≈ 1.3e-6). Before t_c, ᾱ(t) is exactly the formula above.
    """

    def __init__(self, s: float = 0.008, beta_clip: float = 999.0):
        if not s > 0:
            raise ValueError(f"cosine_s must be > 0, got {s!r}")
        if not beta_clip > 0:
            raise ValueError(f"cosine_beta_clip must be > 0, got {beta_clip!r}")
        self.s = float(s)
        self.beta_clip = float(beta_clip)
        theta_c = math.atan(self.beta_clip * (1 + self.s) / math.pi)
        self.t_clip = theta_c * 2 * (1 + self.s) / math.pi - self.s
        self._log_cos_theta0 = math.log(math.cos(self._theta(self.s * 0.0)))
        self._log_alpha_bar_clip = 2 * (math.log(math.cos(theta_c)) - self._log_cos_theta0)

    def _theta(self, t):
        return (t + self.s) / (1 + self.s) * math.pi / 2

    def beta(self, t: torch.Tensor) -> torch.Tensor:
        raw = math.pi * torch.tan(self._theta(t.clamp(max=self.t_clip))) / (1 + self.s)
        return torch.where(t < self.t_clip, raw, torch.full_like(t, self.beta_clip))

    def log_mean_coeff(self, t: torch.Tensor) -> torch.Tensor:
        # ½ log ᾱ(t): the formula up to t_c, then linear decay at rate ½β_clip.
        log_cos = torch.log(torch.cos(self._theta(t.clamp(max=self.t_clip))))
        past_clip = (t - self.t_clip).clamp(min=0)
        # clamp: at t = 0 the difference of logs can round to +1e-17, which would make std NaN.
        return (log_cos - self._log_cos_theta0 - 0.5 * self.beta_clip * past_clip).clamp(max=0)

    def t_from_log_mean_coeff(self, log_mean_coeff: torch.Tensor) -> torch.Tensor:
        log_alpha_bar = 2 * log_mean_coeff
        # Before the clip: cos²θ = ᾱ·cos²θ₀ =: e^L, and θ = atan(√(1 − e^L) / e^{L/2}) (stable near t = 0).
        L = (log_alpha_bar + 2 * self._log_cos_theta0).clamp(max=0)
        theta = torch.atan(torch.sqrt(-torch.expm1(L)) / torch.exp(0.5 * L))
        t_before = theta * 2 * (1 + self.s) / math.pi - self.s
        t_after = self.t_clip + (self._log_alpha_bar_clip - log_alpha_bar) / self.beta_clip
        return torch.where(log_alpha_bar >= self._log_alpha_bar_clip, t_before, t_after)

    def discrete_betas(self, N: int) -> torch.Tensor:
        """Nichol & Dhariwal's chain: βᵢ = 1 − f((i+1)/N)/f(i/N), clipped at 0.999 (float64).

        This uses the unclipped f, exactly as the paper; the chain's own clip is on βᵢ.
        """
        t = torch.arange(N + 1, dtype=torch.float64) / N
        f = torch.cos(self._theta(t)) ** 2
        return (1 - f[1:] / f[:-1]).clamp(max=0.999)


SCHEDULES = {"linear", "cosine"}


def make_schedule(schedule: str, beta_min: float, beta_max: float,
                  cosine_s: float = 0.008, cosine_beta_clip: float = 999.0):
    """Build a schedule by name; `beta_min`/`beta_max` are checked always, used by "linear" only."""
    linear = LinearSchedule(beta_min, beta_max)
    if schedule == "linear":
        return linear
    if schedule == "cosine":
        return CosineSchedule(cosine_s, cosine_beta_clip)
    raise ValueError(f"Unknown schedule {schedule!r}; expected one of {sorted(SCHEDULES)}")
