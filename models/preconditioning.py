"""EDM's preconditioning of a denoiser network (Karras et al. 2022, sec. 5 and Table 1).

The denoiser of noise level σ is D(x̂; σ) = c_skip(σ)·x̂ + c_out(σ)·F(c_in(σ)·x̂; c_noise(σ)),
where x̂ = x_0 + σ·n is the noisy data, F the raw network and σ_data the data's standard
deviation. The coefficients keep the network's input and its training target at unit variance
(their eq. 7 and App. B.6):

    c_skip = σ_data² / (σ² + σ_data²)        c_out = σ·σ_data / √(σ² + σ_data²)
    c_in   = 1 / √(σ² + σ_data²)             c_noise = ¼·ln σ

`models.ScoreModel(..., parametrization="edm")` applies them to any SDE through σ = std/mean and
x̂ = x/mean; this module holds only the formulas.
"""
from __future__ import annotations

from typing import NamedTuple

import torch

SIGMA_DATA = 0.5  # EDM's σ_data for images scaled to [-1, 1] (Karras et al. 2022, Table 1)


class EDMCoefficients(NamedTuple):
    """c_skip, c_out, c_in, c_noise, each shaped like σ."""
    c_skip: torch.Tensor
    c_out: torch.Tensor
    c_in: torch.Tensor
    c_noise: torch.Tensor


def edm_coefficients(sigma: torch.Tensor, sigma_data: float = SIGMA_DATA) -> EDMCoefficients:
    """The preconditioning of Karras et al. 2022, Table 1 ("Ours"), for noise levels `sigma` `[B]`
    (σ > 0) and the data's standard deviation `sigma_data` > 0; see the module docstring."""
    total = sigma ** 2 + sigma_data ** 2
    root = torch.sqrt(total)
    return EDMCoefficients(sigma_data ** 2 / total, sigma * sigma_data / root, 1 / root,
                           0.25 * torch.log(sigma))


def check_sigma_data(sigma_data) -> float:
    """σ_data must be a finite number > 0; returns it as a float."""
    if isinstance(sigma_data, bool) or not isinstance(sigma_data, (int, float)) \
            or not 0 < sigma_data < float("inf"):
        raise ValueError(f"sigma_data must be a positive number, got {sigma_data!r}")
    return float(sigma_data)
