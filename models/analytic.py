"""Exact ground truth: a Gaussian mixture with diagonal covariances, diffused by any SDE.

Every SDE here has a linear Gaussian kernel x_t = a(t)·x_0 + σ(t)·z, so a mixture
Σ_k w_k N(μ_k, diag(v_k)) stays a mixture at every t:
    p_t(x) = Σ_k w_k N(x; a(t)μ_k, diag(a(t)²v_k + σ(t)²)),
with a closed-form score ∇ₓ log p_t and log-density (nats). The mixture lives in the
flattened space, so `x` may be `[B, d]` or an image batch `[B, C, H, W]` with C·H·W = d.
"""
from __future__ import annotations

import math
from typing import Callable, Optional, Sequence, Union

import torch

ArrayLike = Union[torch.Tensor, Sequence]


class GaussianMixture:
    """Mixture of K Gaussians in d dims. Stored in float64 on the CPU.

    Args:
        weights: `[K]`, positive, summing to 1.
        means: `[K, d]`.
        variances: `[K, d]` (diagonal covariances) or `[K]` (isotropic), positive.
    """

    def __init__(self, weights: ArrayLike, means: ArrayLike, variances: ArrayLike):
        weights = torch.as_tensor(weights, dtype=torch.float64)
        means = torch.as_tensor(means, dtype=torch.float64)
        variances = torch.as_tensor(variances, dtype=torch.float64)
        if weights.ndim != 1 or means.ndim != 2 or means.shape[0] != weights.shape[0]:
            raise ValueError(f"weights must be [K] and means [K, d]; got weights {tuple(weights.shape)}, "
                             f"means {tuple(means.shape)}")
        if variances.ndim == 1:
            variances = variances[:, None].expand_as(means).clone()
        if variances.shape != means.shape:
            raise ValueError(f"variances must be [K] or [K, d] = {tuple(means.shape)}, "
                             f"got {tuple(variances.shape)}")
        if not bool((weights > 0).all()) or abs(weights.sum().item() - 1) > 1e-6:
            raise ValueError(f"weights must be positive and sum to 1, got {weights.tolist()}")
        if not bool((variances > 0).all()):
            raise ValueError("variances must be positive")
        self.weights, self.means, self.variances = weights, means, variances

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def mean(self) -> torch.Tensor:
        """Mixture mean, `[d]`."""
        return self.weights @ self.means

    def variance(self) -> torch.Tensor:
        """Per-coordinate mixture variance, `[d]`."""
        second_moment = self.weights @ (self.variances + self.means ** 2)
        return second_moment - self.mean() ** 2

    def sample(self, n: int, generator: Optional[torch.Generator] = None,
               dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """Draw `[n, d]` exact samples of p_0 (on the CPU; pass a CPU generator)."""
        components = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        noise = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        x = self.means[components] + self.variances[components].sqrt() * noise
        return x.to(dtype)

    @staticmethod
    def _kernel(t, sde, batch: int, device):
        """Per-sample mean coefficient and kernel std `[B]` (float64) from the SDE's `marginal_prob`."""
        ones = torch.ones(batch, 1, dtype=torch.float64, device=device)
        if sde is None:
            return ones[:, 0], torch.zeros_like(ones[:, 0])
        t = torch.as_tensor(t, dtype=torch.float64, device=device).expand(batch)
        mean, std = sde.marginal_prob(ones, t)  # mean = a(t)·1, since the kernel mean is a(t)·x0
        return mean[:, 0], std.to(torch.float64)

    def _component_terms(self, x: torch.Tensor, t, sde):
        """Log of w_k N(x; a μ_k, a²v_k + σ²) `[B, K]`, and the per-component score terms."""
        flat = x.flatten(1).to(torch.float64)                             # [B, d], differentiable
        if flat.shape[1] != self.dim:
            raise ValueError(f"x has {flat.shape[1]} dims per sample, the mixture has {self.dim}")
        weights, means, variances = (p.to(x.device) for p in (self.weights, self.means, self.variances))
        mean_coeff, std = self._kernel(t, sde, flat.shape[0], x.device)
        a = mean_coeff[:, None, None]                                     # [B, 1, 1]
        var = a ** 2 * variances + std[:, None, None] ** 2                # [B, K, d]
        diff = flat[:, None, :] - a * means                               # [B, K, d]
        log_normal = -0.5 * (diff ** 2 / var + torch.log(2 * math.pi * var)).sum(-1)
        return torch.log(weights) + log_normal, -diff / var

    def log_prob(self, x: torch.Tensor, t=0.0, sde=None) -> torch.Tensor:
        """Exact log p_t(x) in nats, `[B]`, typed like `x`; differentiable (sde = None: the data p_0)."""
        log_joint, _ = self._component_terms(x, t, sde)
        return torch.logsumexp(log_joint, dim=1).to(x.dtype)

    def score(self, x: torch.Tensor, t, sde) -> torch.Tensor:
        """Exact ∇ₓ log p_t(x), shaped and typed like `x`: Σ_k r_k(x)·(−(x − aμ_k)/var_k)."""
        log_joint, component_scores = self._component_terms(x, t, sde)
        responsibilities = torch.softmax(log_joint, dim=1)                 # [B, K]
        score = (responsibilities[:, :, None] * component_scores).sum(1)  # [B, d]
        return score.reshape(x.shape).to(x.dtype)

    def score_fn(self, sde) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """`score_fn(x, t)`: the exact score of p_t under `sde`."""
        return lambda x, t: self.score(x, t, sde)
