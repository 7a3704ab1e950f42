"""What VE and EDM's SDE share: no drift, x_t = x_0 + σ(t)·z, and the N(0, σ_max²I) prior."""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch

from sde_lib.base import SDE, sample_standard_normal, standard_normal_logp


class VEFamilySDE(SDE):
    """Base of `VESDE` and `EDMSDE`: dx = g(t) dw, mean coefficient 1, kernel std σ(t), prior
    N(0, σ_max²I). Subclasses give σ(t), g, T, the log-SNR and the discrete chain."""

    def __init__(self, sigma_min: float, sigma_max: float, N: int):
        super().__init__(N)
        if not 0 < sigma_min < sigma_max:
            raise ValueError(
                f"sigma_min and sigma_max must satisfy 0 < sigma_min < sigma_max, "
                f"got sigma_min={sigma_min!r}, sigma_max={sigma_max!r}")
        self.sigma_min = float(sigma_min)
        self.sigma_max = float(sigma_max)

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        """The kernel's std σ(t), shape `[B]`."""
        raise NotImplementedError

    def marginal_coeffs(self, t: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        return torch.ones_like(t), self.sigma(t)

    def prior_sampling(self, shape: Sequence[int], generator: Optional[torch.Generator] = None,
                       device=None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return sample_standard_normal(shape, generator, device, dtype) * self.sigma_max

    def prior_logp(self, z: torch.Tensor) -> torch.Tensor:
        return standard_normal_logp(z, std=self.sigma_max)
