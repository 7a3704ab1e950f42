"""EDM's training loss (Karras et al. 2022, sec. 5, eq. 8 and Table 1), for any SDE.

Noise levels are log-normal, ln σ ~ N(P_mean, P_std²), and the denoiser D(x̂; σ) = E[x_0 | x̂],
x̂ = x_0 + σ·n, is fitted with the weight λ(σ) = (σ² + σ_data²)/(σ·σ_data)²:

    loss = λ(σ)·‖D(x_0 + σ·n; σ) − x_0‖²,

λ = 1/c_out², so that the raw network's target has unit weight at every σ (their eq. 8). On any
SDE, σ is the noise-to-signal ratio std/a: the example is drawn at the time t with σ̄(t) = σ
(`sde.t_from_log_snr(−2 ln σ)`; t = σ on EDMSDE), as x_t = a·(x_0 + σ·n), and D is Tweedie's
(x_t + std²·s(x_t, t))/a from the score function, which for the "edm" parametrisation of
`models.ScoreModel` is its preconditioned D exactly. σ is not clipped to the SDE's range (EDM
does not clip either); every SDE here evaluates its closed forms beyond T. The reduction over
dimensions is EDM's sum (`reduce_mean=False`), or the mean. Non-leaky augmentation (their App.
F.2) is not part of this loss.
"""
from __future__ import annotations

from typing import Optional

import torch

from sde_lib import SDE, ScoreFn, append_dims
from training.losses import Loss, Shard, _reduce, conditioned, draw_global, randn_global

P_MEAN, P_STD = -1.2, 1.2   # Karras et al. 2022, Table 1 (CIFAR-10 and the other sets)


def edm_loss_weight(sigma: torch.Tensor, sigma_data: float) -> torch.Tensor:
    """λ(σ) = (σ² + σ_data²)/(σ·σ_data)², shaped like `sigma` (Karras et al. 2022, Table 1)."""
    return (sigma ** 2 + sigma_data ** 2) / (sigma * sigma_data) ** 2


class EDMLoss(Loss):
    """λ(σ)·‖D − x_0‖² per example `[B]` with ln σ ~ N(p_mean, p_std²); see the module docstring.

    Args:
        sde: the forward SDE (σ = std/a; EDMSDE: σ = t).
        sigma_data: the data's standard deviation σ_data > 0.
        p_mean, p_std: mean and standard deviation (> 0) of ln σ.
        reduce_mean: average over dimensions instead of summing.
    """

    def __init__(self, sde: SDE, *, sigma_data: float = 0.5, p_mean: float = P_MEAN,
                 p_std: float = P_STD, reduce_mean: bool = False):
        if not 0 < sigma_data < float("inf"):
            raise ValueError(f"training.sigma_data must be a positive number, got {sigma_data!r}")
        if not 0 < p_std < float("inf") or not abs(p_mean) < float("inf"):
            raise ValueError(f"training.p_std must be > 0 and training.p_mean finite, got "
                             f"p_mean={p_mean!r}, p_std={p_std!r}")
        self.sde, self.reduce_mean = sde, reduce_mean
        self.sigma_data, self.p_mean, self.p_std = float(sigma_data), float(p_mean), float(p_std)

    def sample_sigma(self, n: int, generator: Optional[torch.Generator]) -> torch.Tensor:
        """`[n]` float64 noise levels on the CPU, ln σ ~ N(p_mean, p_std²)."""
        normal = torch.randn(n, generator=generator, dtype=torch.float64,
                             device=generator.device if generator is not None else None).cpu()
        return torch.exp(self.p_mean + self.p_std * normal)

    def __call__(self, score_fn: ScoreFn, x0: torch.Tensor,
                 generator: Optional[torch.Generator] = None, shard: Shard = (0, 1),
                 y: Optional[torch.Tensor] = None) -> torch.Tensor:
        score_fn = conditioned(score_fn, y)
        sigma = draw_global(lambda n: self.sample_sigma(n, generator), x0, shard)
        t = self.sde.t_from_log_snr(-2 * torch.log(sigma)).to(x0.device)
        z = randn_global(x0, generator, shard)
        mean_coeff, std = (append_dims(c.to(x0), x0.ndim) for c in self.sde.marginal_coeffs(t))
        x_t = mean_coeff * x0 + std * z                                  # a·(x_0 + σ·n)
        denoised = (x_t + std ** 2 * score_fn(x_t, t.to(x0.dtype))) / mean_coeff   # D(x̂; σ)
        weight = edm_loss_weight(sigma, self.sigma_data).to(x0)
        return weight * _reduce((denoised - x0) ** 2, self.reduce_mean)
