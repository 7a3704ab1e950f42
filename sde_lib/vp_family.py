"""What VP and sub-VP share: a β schedule, the drift −½β(t)·x, and the N(0, I) prior."""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from sde_lib.base import SDE, sample_standard_normal, standard_normal_logp
from sde_lib.schedules import make_schedule
from sde_lib.utils import append_dims


class VPFamilySDE(SDE):
    """Base of `VPSDE` and `subVPSDE`: dx = −½β(t)·x dt + g(t) dw, mean coefficient
    a(t) = exp(−½∫₀ᵗβ), prior N(0, I). Subclasses give g, the kernel std and the log-SNR."""

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

    def drift_and_beta(self, x: torch.Tensor, t: torch.Tensor):
        """The drift −½β(t)·x (shaped like x) and β(t) `[B]`."""
        beta_t = self.schedule.beta(t)
        return -0.5 * append_dims(beta_t, x.ndim) * x, beta_t

    def prior_sampling(self, shape: Sequence[int], generator: Optional[torch.Generator] = None,
                       device=None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return sample_standard_normal(shape, generator, device, dtype)

    def prior_logp(self, z: torch.Tensor) -> torch.Tensor:
        return standard_normal_logp(z)

    def ancestral_variance(self, s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """DDPM's σ² = β: the transition's own variance v (see `SDE`)."""
        return self.transition_coeffs(s, t)[1] ** 2
