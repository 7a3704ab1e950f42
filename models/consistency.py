"""The consistency parametrisation of a score network (Song et al. 2023, App. C; Song &
Dhariwal 2023, sec. 3).

A consistency function maps a point x_t of any probability-flow trajectory to the trajectory's
start, f(x_t, t) ≈ x_eps. In the scaled variable x̂ = x/a(t) with noise level σ = σ̄(t) = std/a
(`sde_lib`'s σ̄ = exp(−λ/2)), the student is
    f(x̂, σ) = c_skip(σ)·x̂ + c_out(σ)·F(x̂, σ),
    c_skip(σ) = σ_data² / ((σ − σ_min)² + σ_data²),   c_out(σ) = σ_data·(σ − σ_min) / √(σ_data² + σ²),
so that f(x̂, σ_min) = x̂ exactly (c_skip = 1, c_out = 0), whatever F is. σ_min = σ̄(eps).

F is the raw output the teacher's own parametrisation implies in EDM's preconditioning
(Karras et al. 2022, Table 1): F = (D − c_skip^EDM·x̂)/c_out^EDM, D the network's denoiser in its
own parametrisation ("noise", "score" or "edm"). So a student initialised with the teacher's
weights starts at f ≈ D, the teacher's denoiser, as Song et al. 2023 initialise it.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch

from models.preconditioning import edm_coefficients
from models.score_model import ScoreModel
from sde_lib import append_dims


class ConsistencyCoefficients(NamedTuple):
    c_skip: torch.Tensor
    c_out: torch.Tensor


def consistency_coefficients(sigma: torch.Tensor, sigma_min: torch.Tensor,
                             sigma_data: float) -> ConsistencyCoefficients:
    """c_skip, c_out of Song et al. 2023, App. C, at noise levels `sigma` `[B]` ≥ `sigma_min`:
    exactly 1 and 0 at σ = σ_min (see the module docstring)."""
    shifted = (sigma - sigma_min).clamp(min=0)
    c_skip = sigma_data ** 2 / (shifted ** 2 + sigma_data ** 2)
    c_out = sigma_data * shifted / torch.sqrt(sigma_data ** 2 + sigma ** 2)
    return ConsistencyCoefficients(c_skip, c_out)


class ConsistencyModel(ScoreModel):
    """A consistency student: `consistency(x, t)` is f(x_t, t) in the data's units, and calling
    it is the score whose Tweedie data prediction is f, s = (a·f − x)/std², so that every
    sampler, and `samplers.common.data_prediction` in particular, sees f as E[x_0 | x_t].

    Args as `ScoreModel`, plus `eps`: the student's smallest time (σ_min = σ̄(eps)), where
    f(x, eps) = x/a(eps) exactly.
    """

    def __init__(self, net, sde, continuous: bool = True, parametrization: Optional[str] = None,
                 sigma_data: float = 0.5, eps: float = 1e-3):
        super().__init__(net, sde, continuous, parametrization, sigma_data)
        if not 0 < eps < sde.T:
            raise ValueError(f"eps must lie in (0, T={sde.T}), got {eps!r}")
        if self.learn_variance:
            raise ValueError("a consistency student needs a network without learned variances")
        self.eps = float(eps)

    def _base_denoiser(self, x: torch.Tensor, t: torch.Tensor, y) -> torch.Tensor:
        """D(x_t, t) of the network in its own parametrisation (data units)."""
        if self.parametrization == "edm":
            return self._edm_terms(x, t, y)[0]
        score = ScoreModel._score_and_variance(self, x, t, y)[0]
        mean_coeff, std = (append_dims(c, x.ndim).to(x.dtype) for c in self.sde.marginal_coeffs(t))
        return (x + std ** 2 * score) / mean_coeff

    def consistency(self, x: torch.Tensor, t: torch.Tensor,
                    y: Optional[torch.Tensor] = None) -> torch.Tensor:
        """f(x_t, t) `[B, ...]` for x `[B, ...]` at times t `[B]` (or a scalar) ≥ eps."""
        t = t.expand(x.shape[0]) if t.ndim == 0 else t
        sigma = self.sde.sigma_bar(t)
        sigma_min = self.sde.sigma_bar(torch.full_like(t, self.eps))
        mean_coeff = append_dims(self.sde.marginal_coeffs(t)[0], x.ndim).to(x.dtype)
        x_hat = x / mean_coeff
        edm = edm_coefficients(sigma, self.sigma_data)
        c_skip, c_out = consistency_coefficients(sigma, sigma_min, self.sigma_data)
        raw = (self._base_denoiser(x, t, y) - append_dims(edm.c_skip, x.ndim).to(x.dtype) * x_hat) \
            / append_dims(edm.c_out, x.ndim).to(x.dtype)
        return append_dims(c_skip, x.ndim).to(x.dtype) * x_hat \
            + append_dims(c_out, x.ndim).to(x.dtype) * raw

    def denoise(self, x: torch.Tensor, t: torch.Tensor,
                y: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The consistency function f(x_t, t) (the student's estimate of x_0)."""
        return self.consistency(x, t, y)

    def _score_and_variance(self, x: torch.Tensor, t: torch.Tensor, y):
        t = t.expand(x.shape[0]) if t.ndim == 0 else t
        mean_coeff, std = (append_dims(c, x.ndim).to(x.dtype) for c in self.sde.marginal_coeffs(t))
        return (mean_coeff * self.consistency(x, t, y) - x) / std ** 2, None

