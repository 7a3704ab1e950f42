"""Denoising score-matching losses (Song et al. 2021; Ho et al. 2020; Song & Ermon 2019).

Each loss is a callable `loss(score_fn, x0, generator=None, shard=(rank, world_size), y=None)
-> [B]` per-example losses; the training step averages them over the batch. Class labels y
`[B]` (class-conditional models) are passed on to `score_fn(x, t, y)`; `LabelDropout` replaces
a random fraction of them by the null label. Under data parallelism
x0 is this rank's share of the global batch and the noise is drawn for the global batch. With z ~ N(0, I) and x_t = a(t)·x0 + σ(t)·z, the
optimal score is −z/σ(t) in expectation, so every loss below is a weighted ‖σ·s + z‖².
"""
from __future__ import annotations

import math
from typing import Callable, Optional, Tuple

import torch

from sde_lib import SDE, ScoreFn, append_dims

Shard = Tuple[int, int]
Gather = Callable[[torch.Tensor], torch.Tensor]


class Loss:
    """Base of the training losses: `loss(score_fn, x0, generator=None, shard=(0, 1), y=None)
    -> [B]`. A loss is stateless unless it overrides the three hooks below (the hybrid loss's
    timestep sampler is the one with state)."""

    def state_dict(self) -> dict:
        """State to keep in training checkpoints."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore `state_dict()`'s state."""

    def after_backward(self, gather: Gather) -> None:
        """Called once per training step after the backward pass; `gather` concatenates a
        tensor over ranks in rank order (the identity for one process)."""

    def parts(self) -> dict:
        """The parts of the last call's loss worth logging (name → batch-mean float)."""
        return {}


def draw_global(draw, x: torch.Tensor, shard: Shard) -> torch.Tensor:
    """Draw for the global batch (this shard's size × world size), keep this rank's slice.

    Every rank holds the same generator state, so example j of the global batch gets the
    same t and z whatever the number of processes (and one process reproduces them all).
    """
    rank, world_size = shard
    n = x.shape[0]
    return draw(n * world_size)[rank * n:(rank + 1) * n]


def randn_global(x: torch.Tensor, generator: Optional[torch.Generator],
                 shard: Shard) -> torch.Tensor:
    """N(0, I) shaped like `x` for this rank's share of the global batch (`draw_global`),
    drawn on the generator's device and moved to x's."""
    device = generator.device if generator is not None else x.device
    return draw_global(lambda n: torch.randn((n,) + tuple(x.shape[1:]), generator=generator,
                                             device=device, dtype=x.dtype), x, shard).to(x.device)


def conditioned(score_fn: ScoreFn, y: Optional[torch.Tensor]) -> ScoreFn:
    """`score_fn` itself, or `(x, t) -> score_fn(x, t, y)` for class labels y `[B]`."""
    return score_fn if y is None else (lambda x, t: score_fn(x, t, y))


def _reduce(squared_error: torch.Tensor, reduce_mean: bool) -> torch.Tensor:
    """`[B, ...] -> [B]` by the mean (`reduce_mean`) or the sum over all but the batch dim."""
    flat = squared_error.flatten(1)
    return flat.mean(1) if reduce_mean else flat.sum(1)


class ImportanceSampler:
    """Draws t ∈ [eps, T] with density q(t) ∝ g(t)²/σ(t)² by inverting a tabulated CDF.

    Song et al. (2021b) use this proposal for the likelihood weighting λ(t) = g(t)²: the
    importance weight λ(t)/(σ²·q(t)) is then the constant `normalizer`, which removes most of
    the variance of the weighted loss. Works for any SDE (VE gives the uniform density).
    """

    def __init__(self, sde: SDE, eps: float, grid_size: int = 20_000):
        # Geometric grid: for VP the density behaves like 1/t near 0, so resolve small t finely.
        t = torch.logspace(math.log10(eps), math.log10(sde.T), grid_size, dtype=torch.float64)
        _, diffusion = sde.sde(torch.zeros(grid_size, 1, dtype=torch.float64), t)
        density = diffusion ** 2 / sde.marginal_coeffs(t)[1] ** 2
        increments = 0.5 * (density[1:] + density[:-1]) * (t[1:] - t[:-1])  # trapezoid rule
        cdf = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(increments, 0)])
        self.normalizer = cdf[-1].item()          # Z = ∫ g²/σ² dt
        self._cdf = cdf / cdf[-1]
        self._t = t

    def sample(self, n: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """`[n]` float64 times on the CPU, distributed as q(t)."""
        u = torch.rand(n, generator=generator, dtype=torch.float64,
                       device=generator.device if generator is not None else None).cpu()
        right = torch.searchsorted(self._cdf, u).clamp(1, len(self._t) - 1)
        left = right - 1
        frac = (u - self._cdf[left]) / (self._cdf[right] - self._cdf[left]).clamp(min=1e-300)
        return self._t[left] + frac * (self._t[right] - self._t[left])


class ContinuousDSMLoss(Loss):
    """Continuous-time DSM (Song et al. 2021, eq. 7) with t ~ U(eps, T).

    Default weighting λ(t) = σ(t)²: loss = ‖σ·s + z‖². With `likelihood_weighting`,
    λ(t) = g(t)² (Song et al. 2021b), loss = g²·‖s + z/σ‖², which makes the loss an upper bound
    on the negative log-likelihood; `importance_sampling` draws t ∝ g²/σ² instead and reweights
    by Z/(T − eps) so the expected loss is unchanged.
    """

    def __init__(self, sde: SDE, *, reduce_mean: bool = False, likelihood_weighting: bool = False,
                 importance_sampling: bool = False, eps: float = 1e-5):
        if importance_sampling and not likelihood_weighting:
            raise ValueError("training.importance_sampling requires training.likelihood_weighting=True")
        if not 0 < eps < sde.T:
            raise ValueError(f"loss eps must lie in (0, T={sde.T}), got {eps!r}")
        self.sde, self.reduce_mean, self.eps = sde, reduce_mean, eps
        self.likelihood_weighting = likelihood_weighting
        self.importance = ImportanceSampler(sde, eps) if importance_sampling else None

    def sample_t(self, n: int, generator: Optional[torch.Generator]) -> torch.Tensor:
        if self.importance is not None:
            return self.importance.sample(n, generator)
        u = torch.rand(n, generator=generator, dtype=torch.float64,
                       device=generator.device if generator is not None else None).cpu()
        return self.eps + (self.sde.T - self.eps) * u

    def __call__(self, score_fn: ScoreFn, x0: torch.Tensor, generator: Optional[torch.Generator] = None,
                 shard: Shard = (0, 1), y: Optional[torch.Tensor] = None) -> torch.Tensor:
        score_fn = conditioned(score_fn, y)
        t = draw_global(lambda n: self.sample_t(n, generator), x0, shard).to(x0.device)
        z = randn_global(x0, generator, shard)
        mean_coeff, std = (c.to(x0) for c in self.sde.marginal_coeffs(t))
        std_ = append_dims(std, x0.ndim)
        x_t = append_dims(mean_coeff, x0.ndim) * x0 + std_ * z
        score = score_fn(x_t, t.to(x0.dtype))
        if not self.likelihood_weighting:
            return _reduce((score * std_ + z) ** 2, self.reduce_mean)
        g2 = self.sde.sde(torch.zeros_like(x0[:1]).expand(len(t), *x0.shape[1:]), t)[1].to(x0) ** 2
        if self.importance is None:
            return _reduce((score + z / std_) ** 2, self.reduce_mean) * g2
        # g²‖s + z/σ‖² / q(t) = Z·‖σs + z‖², divided by (T − eps) to match uniform sampling's scale.
        weight = self.importance.normalizer / (self.sde.T - self.eps)
        return _reduce((score * std_ + z) ** 2, self.reduce_mean) * weight


class DiscreteDSMLoss(Loss):
    """DSM on the SDE's own discrete chain, i ~ U{0, …, N−1}, t_i = i·T/(N−1).

    For VP this is DDPM's L_simple ‖ε_θ − ε‖² (Ho et al. 2020, eq. 14), since ε_θ = −σᵢ·s; for
    VE it is the SMLD loss ½σᵢ²‖s + z/σᵢ‖² (Song & Ermon 2019, eq. 5; `weight=0.5`).
    """

    def __init__(self, sde: SDE, *, reduce_mean: bool = False, weight: float = 1.0):
        self.sde, self.reduce_mean, self.weight = sde, reduce_mean, weight

    def __call__(self, score_fn: ScoreFn, x0: torch.Tensor, generator: Optional[torch.Generator] = None,
                 shard: Shard = (0, 1), y: Optional[torch.Tensor] = None) -> torch.Tensor:
        score_fn = conditioned(score_fn, y)
        index = uniform_chain_index(self.sde, x0, generator, shard)
        z = randn_global(x0, generator, shard)
        x_t, std_, t = chain_perturb(self.sde, x0, index, z)
        score = score_fn(x_t, t)
        return self.weight * _reduce((score * std_ + z) ** 2, self.reduce_mean)


def uniform_chain_index(sde: SDE, x0: torch.Tensor, generator: Optional[torch.Generator],
                        shard: Shard) -> torch.Tensor:
    """Chain indices i ~ U{0, …, N−1} (int64, CPU) for this rank's share of the global batch."""
    device = generator.device if generator is not None else None
    return draw_global(lambda n: torch.randint(0, sde.N, (n,), generator=generator,
                                               device=device), x0, shard).cpu()


def chain_perturb(sde: SDE, x0: torch.Tensor, index: torch.Tensor, z: torch.Tensor):
    """(x_i, σᵢ broadcast like x0, t_i): x_i = aᵢ·x0 + σᵢ·z on the SDE's discrete chain
    (`sde.discrete_marginal_coeffs`), at the chain's time t_i = i·T/(N−1) `[B]`."""
    mean_coeff, std = (c.to(x0) for c in sde.discrete_marginal_coeffs(index))
    std_ = append_dims(std, x0.ndim)
    x_t = append_dims(mean_coeff, x0.ndim) * x0 + std_ * z
    t = (index.to(x0.dtype) * sde.T / max(sde.N - 1, 1)).to(x0.device)
    return x_t, std_, t


class LabelDropout(Loss):
    """Classifier-free guidance training (Ho & Salimans 2022): each example's class label is
    replaced by the null label with probability `p` before the wrapped loss sees it, so one
    network learns both the conditional and the unconditional score.

    The drop decisions are drawn for the global batch before the loss's own draws, like t and z.
    """

    def __init__(self, loss, p: float, null_label: int):
        if not 0 <= p <= 1:
            raise ValueError(f"training.label_dropout must lie in [0, 1], got {p!r}")
        self.loss, self.p, self.null_label = loss, float(p), int(null_label)

    def __call__(self, score_fn: ScoreFn, x0: torch.Tensor, generator: Optional[torch.Generator] = None,
                 shard: Shard = (0, 1), y: Optional[torch.Tensor] = None) -> torch.Tensor:
        if y is None:
            raise ValueError("a class-conditional loss needs class labels y; the data set has none")
        if self.p > 0:
            device = generator.device if generator is not None else None
            u = draw_global(lambda n: torch.rand(n, generator=generator, device=device), x0, shard)
            y = torch.where(u.to(y.device) < self.p, torch.full_like(y, self.null_label), y)
        return self.loss(score_fn, x0, generator, shard, y)

    def state_dict(self) -> dict:
        return self.loss.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.loss.load_state_dict(state)

    def after_backward(self, gather: Gather) -> None:
        self.loss.after_backward(gather)

    def parts(self) -> dict:
        return self.loss.parts()


def build_loss(sde: SDE, *, continuous: bool, reduce_mean: bool, likelihood_weighting: bool,
               importance_sampling: bool = False, discrete_weight: float = 1.0) -> Loss:
    """The loss a `config.training` section asks for (continuous DSM or the discrete chain's)."""
    if continuous:
        return ContinuousDSMLoss(sde, reduce_mean=reduce_mean, likelihood_weighting=likelihood_weighting,
                                 importance_sampling=importance_sampling)
    if likelihood_weighting:
        raise ValueError("training.likelihood_weighting=True needs training.continuous=True")
    return DiscreteDSMLoss(sde, reduce_mean=reduce_mean, weight=discrete_weight)

