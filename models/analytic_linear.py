"""Exact ground truth for linear observations: the posterior of a Gaussian mixture given
y = A·x + σ_y·n, n ~ N(0, I), a mixture with full covariances (`FullGaussianMixture`).

For a prior Σ_k w_k N(μ_k, V_k) (V_k = diag(v_k)), Bayes' rule per component gives
    p(x | y) = Σ_k w'_k N(x; μ'_k, V'_k),   w'_k ∝ w_k·N(y; A·μ_k, S_k),   S_k = A·V_k·Aᵀ + σ_y²·I,
    μ'_k = μ_k + V_k·Aᵀ·S_k⁻¹·(y − A·μ_k),    V'_k = V_k − V_k·Aᵀ·S_k⁻¹·A·V_k
(the Gaussian conditioning formula; e.g. Bishop 2006, eqs. 2.113-2.117). It holds for σ_y = 0
too when A has full row rank: V'_k is then singular (the posterior lives on A·x = y), so
compare its image under a basis of A's null space (`linear_map`), which is non-degenerate.
"""
from __future__ import annotations

import math
from typing import Optional

import torch

f64 = torch.float64


class FullGaussianMixture:
    """Σ_k w_k N(μ_k, Σ_k) in d dims with full (possibly singular) covariances; float64, CPU.

    Args: weights `[K]` (positive, summing to 1), means `[K, d]`, covariances `[K, d, d]`
    (symmetric positive semi-definite).
    """

    def __init__(self, weights: torch.Tensor, means: torch.Tensor, covariances: torch.Tensor):
        weights, means, covariances = (torch.as_tensor(p, dtype=f64)
                                       for p in (weights, means, covariances))
        k, d = means.shape
        if weights.shape != (k,) or covariances.shape != (k, d, d):
            raise ValueError(f"weights must be [K], means [K, d] and covariances [K, d, d]; got "
                             f"{tuple(weights.shape)}, {tuple(means.shape)}, "
                             f"{tuple(covariances.shape)}")
        if not bool((weights > 0).all()) or abs(weights.sum().item() - 1) > 1e-6:
            raise ValueError(f"weights must be positive and sum to 1, got {weights.tolist()}")
        self.weights, self.means = weights, means
        self.covariances = 0.5 * (covariances + covariances.transpose(1, 2))

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def mean(self) -> torch.Tensor:
        """Mixture mean `[d]`."""
        return self.weights @ self.means

    def sample(self, n: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """`[n, d]` exact draws (float64, CPU): x = μ_k + U_k·diag(λ_k)^½·z with Σ_k = U_k·Λ_k·U_kᵀ."""
        components = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        noise = torch.randn(n, self.dim, generator=generator, dtype=f64)
        eigenvalues, eigenvectors = torch.linalg.eigh(self.covariances)
        factors = eigenvectors * eigenvalues.clamp(min=0).sqrt()[:, None, :]   # [K, d, d]
        return self.means[components] + (factors[components] @ noise[:, :, None])[:, :, 0]

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) in nats `[n]` for x `[n, d]`; needs non-singular covariances."""
        x = torch.as_tensor(x, dtype=f64)
        factor, info = torch.linalg.cholesky_ex(self.covariances)
        if bool((info != 0).any()):
            raise ValueError("log_prob needs non-singular covariances; map the mixture onto a "
                             "subspace where it has a density (linear_map)")
        diff = x[:, None, :] - self.means                                     # [n, K, d]
        white = torch.linalg.solve_triangular(factor, diff.transpose(0, 1).transpose(1, 2),
                                              upper=False)                  # [K, d, n]
        log_det = 2 * torch.log(torch.diagonal(factor, dim1=1, dim2=2)).sum(1)   # [K]
        log_normal = -0.5 * ((white ** 2).sum(1).T + log_det + self.dim * math.log(2 * math.pi))
        return torch.logsumexp(torch.log(self.weights) + log_normal, dim=1)

    def linear_map(self, matrix: torch.Tensor) -> "FullGaussianMixture":
        """The law of M·x `[m]` for M `[m, d]`: means M·μ_k, covariances M·Σ_k·Mᵀ."""
        matrix = torch.as_tensor(matrix, dtype=f64)
        return FullGaussianMixture(self.weights, self.means @ matrix.T,
                                   matrix @ self.covariances @ matrix.T)


def linear_posterior(weights: torch.Tensor, means: torch.Tensor, variances: torch.Tensor,
                     matrix: torch.Tensor, y: torch.Tensor,
                     noise_std: float = 0.0) -> FullGaussianMixture:
    """p(x | y) for the diagonal mixture (weights `[K]`, means, variances `[K, d]`), y `[m]`
    observed as A·x + noise_std·n with A = `matrix` `[m, d]` (module docstring)."""
    matrix, y = torch.as_tensor(matrix, dtype=f64), torch.as_tensor(y, dtype=f64).flatten()
    if matrix.ndim != 2 or matrix.shape[1] != means.shape[1] or y.shape != (matrix.shape[0],):
        raise ValueError(f"matrix must be [m, {means.shape[1]}] and y [m]; got "
                         f"{tuple(matrix.shape)} and {tuple(y.shape)}")
    if not noise_std >= 0:
        raise ValueError(f"noise_std must be >= 0, got {noise_std!r}")
    cross = variances[:, :, None] * matrix.T                                 # V·Aᵀ [K, d, m]
    gram = matrix @ cross + noise_std ** 2 * torch.eye(len(y), dtype=f64)   # S [K, m, m]
    factor, info = torch.linalg.cholesky_ex(gram)
    if bool((info != 0).any()):
        raise ValueError("A·V·Aᵀ + noise_std²·I is singular: a noiseless observation needs a "
                         "matrix of full row rank")
    residual = y - means @ matrix.T                                          # [K, m]
    solved = torch.cholesky_solve(residual[:, :, None], factor)              # S⁻¹(y − Aμ)
    log_det = 2 * torch.log(torch.diagonal(factor, dim1=1, dim2=2)).sum(1)
    log_evidence = -0.5 * ((residual[:, :, None] * solved).sum((1, 2)) + log_det
                           + len(y) * math.log(2 * math.pi))
    posterior_weights = torch.softmax(torch.log(weights) + log_evidence, dim=0)
    posterior_means = means + (cross @ solved)[:, :, 0]
    covariances = torch.diag_embed(variances) - cross @ torch.cholesky_solve(
        cross.transpose(1, 2), factor)
    keep = posterior_weights > 0
    return FullGaussianMixture(posterior_weights[keep] / posterior_weights[keep].sum(),
                               posterior_means[keep], covariances[keep])
