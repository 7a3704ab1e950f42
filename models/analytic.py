"""Exact ground truth: a Gaussian mixture with diagonal covariances, diffused by any SDE.

Every SDE here has a linear Gaussian kernel x_t = a(t)·x_0 + σ(t)·z, so a mixture
Σ_k w_k N(μ_k, diag(v_k)) stays a mixture at every t:
    p_t(x) = Σ_k w_k N(x; a(t)μ_k, diag(a(t)²v_k + σ(t)²)),
with a closed-form score ∇ₓ log p_t and log-density (nats). The mixture lives in the
flattened space, so `x` may be `[B, d]` or an image batch `[B, C, H, W]` with C·H·W = d.

Also exact ground truth for controllable generation: the conditional law of the
unknown coordinates given the known ones (`GaussianMixture.conditional`), and a class-conditional
mixture, one component per class (`ClassConditionalMixture`), with its exact conditional score
and noisy-data classifier log p_t(y | x). For any linear observation y = A·x + σ_y·n, the exact
posterior (`GaussianMixture.posterior`, `models.analytic_linear`), and the diffused mixture p_t
itself (`GaussianMixture.diffused`), whose posterior is the target of a sampler ending at t.
"""
from __future__ import annotations

import math
from typing import Callable, Optional, Sequence, Union

import torch

from models.analytic_linear import linear_posterior

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
        return _weighted_score(responsibilities, component_scores, x)

    def score_fn(self, sde) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """`score_fn(x, t)`: the exact score of p_t under `sde`."""
        return lambda x, t: self.score(x, t, sde)

    def denoiser(self, x_hat: torch.Tensor, sigma) -> torch.Tensor:
        """EDM's ideal denoiser D(x̂; σ) = E[x_0 | x_0 + σ·n = x̂] (Karras et al. 2022, eq. 2),
        shaped and typed like `x_hat` `[B, ...]`; `sigma` `[B]` or a scalar, σ > 0.

        Each component is a Gaussian prior for x_0, so D = Σ_k r_k(x̂)·(μ_k + v_k/(v_k + σ²)·(x̂ − μ_k))
        with responsibilities r_k ∝ w_k N(x̂; μ_k, v_k + σ²) (computed without any score)."""
        flat = x_hat.flatten(1).to(torch.float64)                                  # [B, d]
        sigma = torch.as_tensor(sigma, dtype=torch.float64, device=x_hat.device)
        var_noise = sigma.expand(flat.shape[0])[:, None, None] ** 2              # [B, 1, 1]
        weights, means, variances = (p.to(x_hat.device)
                                     for p in (self.weights, self.means, self.variances))
        var = variances + var_noise                                              # [B, K, d]
        diff = flat[:, None, :] - means                                          # [B, K, d]
        log_joint = torch.log(weights) - 0.5 * (diff ** 2 / var + torch.log(2 * math.pi * var)).sum(-1)
        posterior_means = means + variances / var * diff                         # [B, K, d]
        return _weighted_score(torch.softmax(log_joint, dim=1), posterior_means, x_hat)

    def diffused(self, t: float, sde) -> "GaussianMixture":
        """The mixture p_t: N(a(t)·μ_k, a(t)²·v_k + σ(t)²) for each component."""
        mean_coeff, std = self._kernel(t, sde, 1, None)
        return GaussianMixture(self.weights, mean_coeff * self.means,
                               mean_coeff ** 2 * self.variances + std ** 2)

    def posterior(self, matrix: ArrayLike, y: ArrayLike, noise_std: float = 0.0):
        """The exact p_0(x | y) for y = A·x + noise_std·n `[m]`, A = `matrix` `[m, d]` acting on
        flattened x: a `models.analytic_linear.FullGaussianMixture` (re-weighted components,
        conditioned Gaussians; singular covariances when noise_std = 0)."""
        return linear_posterior(self.weights, self.means, self.variances, matrix, y, noise_std)

    def _known_log_weights(self, mask: torch.Tensor, x_known: torch.Tensor) -> torch.Tensor:
        """log w_k + log N(c; μ_k, v_k) on the known coordinates `[B, K]`; c: `x_known` `[B, d]`."""
        diff = (x_known[:, None, :] - self.means) * mask                     # [B, K, d]
        var = self.variances.expand_as(diff)
        log_normal = -0.5 * (mask * (diff ** 2 / var + torch.log(2 * math.pi * var))).sum(-1)
        return torch.log(self.weights) + log_normal

    def _check_mask(self, mask: ArrayLike) -> torch.Tensor:
        mask = torch.as_tensor(mask).flatten().to(torch.float64)
        if mask.numel() != self.dim or not bool(((mask == 0) | (mask == 1)).all()):
            raise ValueError(f"mask must hold {self.dim} values in {{0, 1}} (1 = known), got "
                             f"{mask.numel()} values")
        return mask

    def conditional(self, mask: ArrayLike, x_known: ArrayLike) -> "GaussianMixture":
        """The exact law of the unknown coordinates given the known ones, p_0(x_u | x_k = c).

        With diagonal covariances each component factorizes, so the conditional is the mixture
        Σ_k w'_k N(μ_k,u, diag(v_k,u)) over the unknown coordinates (mask = 0, in flattened
        order), with w'_k ∝ w_k·N(c; μ_k,k, diag(v_k,k)). Components whose weight underflows to 0
        in float64 are dropped. `mask`: d values in {0, 1} (1 = known); `x_known`: d values.
        """
        mask = self._check_mask(mask)
        if bool((mask == 1).all()):
            raise ValueError("mask marks every coordinate known: there is nothing to condition")
        x_known = torch.as_tensor(x_known, dtype=torch.float64).reshape(1, self.dim)
        weights = torch.softmax(self._known_log_weights(mask, x_known)[0], dim=0)
        keep, unknown = weights > 0, mask == 0
        return GaussianMixture(weights[keep] / weights[keep].sum(), self.means[keep][:, unknown],
                               self.variances[keep][:, unknown])

    def sample_conditional(self, mask: ArrayLike, x_known: torch.Tensor,
                           generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Exact draws of p_0(x | x_k = c_i), one per row c_i of `x_known` `[B, ...]` (B·d values).

        Returns a tensor shaped like `x_known` whose known entries are `x_known`'s and whose
        unknown ones come from the component drawn with the weights w'_k of `conditional`.
        """
        mask = self._check_mask(mask)
        flat = x_known.reshape(x_known.shape[0], -1).to(torch.float64)
        if flat.shape[1] != self.dim:
            raise ValueError(f"x_known has {flat.shape[1]} dims per sample, the mixture {self.dim}")
        probs = torch.softmax(self._known_log_weights(mask, flat), dim=1)    # [B, K]
        components = torch.multinomial(probs, 1, generator=generator)[:, 0]
        noise = torch.randn(flat.shape, generator=generator, dtype=torch.float64)
        drawn = self.means[components] + self.variances[components].sqrt() * noise
        return torch.where(mask.bool(), flat, drawn).reshape(x_known.shape).to(x_known.dtype)


def _weighted_score(weights: torch.Tensor, component_scores: torch.Tensor,
                    x: torch.Tensor) -> torch.Tensor:
    """Σ_k r_k·s_k: weights `[B, K]`, component scores `[B, K, d]` → shaped and typed like `x`."""
    score = (weights[:, :, None] * component_scores).sum(1)              # [B, d]
    return score.reshape(x.shape).to(x.dtype)


class ClassConditionalMixture(GaussianMixture):
    """A mixture with one component per class: p(x | y = k) = N(μ_k, diag(v_k)), p(y = k) = w_k.

    Labels are integers 0..K−1; the null label K (`null_label`) stands for "no class", the full
    mixture, as a classifier-free-guidance model's label dropout does. Arguments as for
    `GaussianMixture`.
    """

    @property
    def num_classes(self) -> int:
        return self.weights.shape[0]

    @property
    def null_label(self) -> int:
        return self.num_classes

    def component(self, label: int) -> GaussianMixture:
        """The class-`label` law p_0(x | y = label), a one-component mixture."""
        if not 0 <= label < self.num_classes:
            raise ValueError(f"label must be in [0, {self.num_classes}), got {label!r}")
        return GaussianMixture([1.0], self.means[label:label + 1], self.variances[label:label + 1])

    def _check_labels(self, y: torch.Tensor, batch: int) -> torch.Tensor:
        y = torch.as_tensor(y)
        if y.shape != (batch,) or y.dtype not in (torch.int32, torch.int64) \
                or not bool(((y >= 0) & (y <= self.null_label)).all()):
            raise ValueError(f"y must be an integer tensor [{batch}] of labels in "
                             f"[0, {self.null_label}] ({self.null_label} = null), got {y!r}")
        return y

    def cond_score(self, x: torch.Tensor, t, sde, y: torch.Tensor) -> torch.Tensor:
        """Exact ∇ₓ log p_t(x | y) per row: the component y's score, or for the null label the
        mixture's (bit-identical to `score`). `y` `[B]` integer labels in [0, K]."""
        log_joint, component_scores = self._component_terms(x, t, sde)
        y = self._check_labels(y, x.shape[0]).to(x.device)
        responsibilities = torch.softmax(log_joint, dim=1)                 # [B, K]
        one_hot = torch.nn.functional.one_hot(y.clamp(max=self.num_classes - 1),
                                              self.num_classes).to(responsibilities.dtype)
        weights = torch.where((y == self.null_label)[:, None], responsibilities, one_hot)
        return _weighted_score(weights, component_scores, x)

    def cond_score_fn(self, sde) -> Callable[..., torch.Tensor]:
        """`cond_score_fn(x, t, y)`: the exact class-conditional score under `sde`."""
        return lambda x, t, y: self.cond_score(x, t, sde, y)

    def classifier_log_prob(self, x: torch.Tensor, t, sde) -> torch.Tensor:
        """Exact log p_t(y = k | x) = log w_k N_k,t(x) − log p_t(x), `[B, K]` in x's dtype."""
        log_joint, _ = self._component_terms(x, t, sde)
        return torch.log_softmax(log_joint, dim=1).to(x.dtype)

    def classifier_log_prob_fn(self, sde) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """`log_prob_fn(x, t) -> [B, K]`: the exact noisy-data classifier under `sde`."""
        return lambda x, t: self.classifier_log_prob(x, t, sde)

    def sample_class(self, labels: torch.Tensor,
                     generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Exact draws `[B, d]` (float64) of p_0(x | y), one per label in `labels` `[B]` (< K)."""
        labels = self._check_labels(labels, len(labels))
        if bool((labels == self.null_label).any()):
            raise ValueError("sample_class needs class labels < num_classes; use sample() for null")
        noise = torch.randn(len(labels), self.dim, generator=generator, dtype=torch.float64)
        return self.means[labels] + self.variances[labels].sqrt() * noise
