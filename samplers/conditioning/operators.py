"""Linear observation operators y = A·x for conditional sampling (`samplers.condition`).

An operator maps a batch x `[B, ...]` to observations y `[B, ...]`, and gives what the
conditional samplers need of A, matrix-free:
    `__call__(x)`              A·x
    `transpose(y)`             Aᵀ·y
    `gram_solve(r, α, β)`      (α·AAᵀ + β·I)⁻¹·r, for r in the range of A
    `pinv(y)`                  A⁺·y = Aᵀ(AAᵀ)⁻¹·y (A must have full row rank on its range)
    `project_onto(x, y)`       x + A⁺(y − A·x): the nearest point with A·x = y
    `replace_row_space(x, v)`  x − P·x + P·v, P = A⁺A the projection onto A's row space
    `input_shape(y_shape)`     the per-sample shape of x for observations of `y_shape`
    `select_rows(index)`       the operator for a batch made of rows `index` (per-sample masks)

The masks, the channel mean and average pooling have AAᵀ = c·I on the range of A (their rows
are orthogonal with equal norms), so every solve is a division; a user map (`MatrixFree`) is
solved by conjugate gradients (Hestenes & Stiefel 1952) with A and Aᵀ only, and `Dense` by an
eigendecomposition of AAᵀ.
"""
from __future__ import annotations

import math
from typing import Callable, Optional, Sequence, Tuple

import torch

from sde_lib import append_dims


def inner(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-row ⟨a, b⟩ in float64: `[B, ...] × [B, ...] -> [B]`."""
    return (a.flatten(1).to(torch.float64) * b.flatten(1).to(torch.float64)).sum(1)


class LinearOperator:
    """Base class: subclasses define `__call__`, `transpose`, `gram_solve`, `input_shape`."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def transpose(self, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def gram_solve(self, r: torch.Tensor, alpha: float, beta: float) -> torch.Tensor:
        raise NotImplementedError

    def input_shape(self, y_shape: Sequence[int]) -> Tuple[int, ...]:
        raise NotImplementedError

    def pinv(self, y: torch.Tensor) -> torch.Tensor:
        """A⁺·y = Aᵀ(AAᵀ)⁻¹·y, shaped like x."""
        return self.transpose(self.gram_solve(y, 1.0, 0.0))

    def project_onto(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x + A⁺(y − A·x): the point nearest x with A·x = y."""
        return x + self.pinv(y - self(x))

    def replace_row_space(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """x − P·x + P·v with P = A⁺A: x's row-space component replaced by v's."""
        return x + self.pinv(self(v - x))

    def select_rows(self, index: Sequence[int]) -> "LinearOperator":
        """The operator for a batch made of the rows `index` (the identity unless per-sample)."""
        return self


class CoIsometry(LinearOperator):
    """An operator with AAᵀ = c·I on its range (`gram`: c), so solves are divisions."""

    gram = 1.0

    def gram_solve(self, r: torch.Tensor, alpha: float, beta: float) -> torch.Tensor:
        return r / (alpha * self.gram + beta)


class Mask(CoIsometry):
    """Inpainting: A·x = mask ⊙ x, observations shaped like x (entries where mask = 0 ignored).

    `mask`: 0/1 (1 = known), broadcastable to x `[B, ...]`; its first dim is 1 (or absent) for
    one mask for all, or B for one per sample. AAᵀ = A is the identity on the range.
    """

    def __init__(self, mask: torch.Tensor, rows: Optional[Sequence[int]] = None):
        mask = torch.as_tensor(mask)
        if not bool(((mask == 0) | (mask == 1)).all()):
            raise ValueError("mask must hold only 0 (unknown) and 1 (known)")
        self.mask, self.rows = mask.bool(), rows

    def _mask(self, x: torch.Tensor) -> torch.Tensor:
        mask = self.mask.to(x.device)
        if self.rows is not None and mask.ndim == x.ndim and mask.shape[0] > 1:
            mask = mask[torch.as_tensor(self.rows, device=x.device)]    # one mask per sample
        return mask

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(self._mask(x), x, torch.zeros_like(x))

    def transpose(self, y: torch.Tensor) -> torch.Tensor:
        return self(y)

    def gram_solve(self, r: torch.Tensor, alpha: float, beta: float) -> torch.Tensor:
        return self(r) / (alpha + beta)

    def input_shape(self, y_shape: Sequence[int]) -> Tuple[int, ...]:
        return tuple(y_shape[1:])

    def project_onto(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.where(self._mask(x), y, x)

    def replace_row_space(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return torch.where(self._mask(x), v, x)

    def select_rows(self, index: Sequence[int]) -> "Mask":
        rows = list(index) if self.rows is None else [self.rows[i] for i in index]
        return Mask(self.mask, rows)


class ChannelMean(CoIsometry):
    """Colorization: the channel mean `[B, C, ...] -> [B, 1, ...]` (gray), AAᵀ = I/C."""

    def __init__(self, channels: int = 3):
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise ValueError(f"channels must be an integer >= 1, got {channels!r}")
        self.channels, self.gram = channels, 1.0 / channels

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=1, keepdim=True)

    def transpose(self, y: torch.Tensor) -> torch.Tensor:
        shape = (y.shape[0], self.channels) + tuple(y.shape[2:])
        return (y / self.channels).expand(shape).contiguous()

    def input_shape(self, y_shape: Sequence[int]) -> Tuple[int, ...]:
        if len(y_shape) < 2 or y_shape[1] != 1:
            raise ValueError(f"a ChannelMean observation must be [B, 1, ...], got {tuple(y_shape)}")
        return (self.channels,) + tuple(y_shape[2:])


class AvgPool(CoIsometry):
    """Super-resolution: mean over `factor`×`factor` blocks, `[B, C, H, W] -> [B, C, H/f, W/f]`;
    Aᵀ spreads each value over its block divided by f², so AAᵀ = I/f²."""

    def __init__(self, factor: int):
        if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
            raise ValueError(f"factor must be an integer >= 1, got {factor!r}")
        self.factor, self.gram = factor, 1.0 / factor ** 2

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[2] % self.factor or x.shape[3] % self.factor:
            raise ValueError(f"AvgPool({self.factor}) needs x [B, C, H, W] with H and W "
                             f"divisible by {self.factor}, got {tuple(x.shape)}")
        return torch.nn.functional.avg_pool2d(x, self.factor)

    def transpose(self, y: torch.Tensor) -> torch.Tensor:
        f = self.factor
        return y.repeat_interleave(f, dim=2).repeat_interleave(f, dim=3) / f ** 2

    def input_shape(self, y_shape: Sequence[int]) -> Tuple[int, ...]:
        if len(y_shape) != 4:
            raise ValueError(f"an AvgPool observation must be [B, C, h, w], got {tuple(y_shape)}")
        return (y_shape[1], y_shape[2] * self.factor, y_shape[3] * self.factor)


class Dense(LinearOperator):
    """An explicit matrix `[m, d]` acting on flattened x: y = A·x.flatten(1), `[B, m]`.

    Solves use the eigendecomposition AAᵀ = U·diag(λ)·Uᵀ; A must have full row rank when a
    solve has β = 0 (noiseless observations). `x_shape`: per-sample shape of x (default (d,)).
    """

    def __init__(self, matrix: torch.Tensor, x_shape: Optional[Sequence[int]] = None):
        matrix = torch.as_tensor(matrix)
        if matrix.ndim != 2 or not matrix.is_floating_point():
            raise ValueError(f"matrix must be a floating [m, d] tensor, got {tuple(matrix.shape)}")
        self.matrix = matrix.to(torch.float64)
        self.x_shape = tuple(x_shape) if x_shape is not None else (matrix.shape[1],)
        if math.prod(self.x_shape) != matrix.shape[1]:
            raise ValueError(f"x_shape {self.x_shape} does not hold {matrix.shape[1]} values")
        self.eigenvalues, self.eigenvectors = torch.linalg.eigh(self.matrix @ self.matrix.T)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.matrix.to(x).T

    def transpose(self, y: torch.Tensor) -> torch.Tensor:
        return (y @ self.matrix.to(y)).view((y.shape[0],) + self.x_shape)

    def gram_solve(self, r: torch.Tensor, alpha: float, beta: float) -> torch.Tensor:
        u = self.eigenvectors.to(r)
        scale = (alpha * self.eigenvalues + beta).to(r)
        return ((r @ u) / scale) @ u.T

    def input_shape(self, y_shape: Sequence[int]) -> Tuple[int, ...]:
        return self.x_shape


class MatrixFree(LinearOperator):
    """A user's linear map given as `forward(x)` and its adjoint `transpose(y)`.

    Args:
        forward: `[B, *x_shape] -> [B, ...]`, linear; transpose: its adjoint (⟨A·x, y⟩ = ⟨x, Aᵀy⟩).
        x_shape: per-sample shape of x.
        gram: c if AAᵀ = c·I is known (solves are then divisions), else None: conjugate
            gradients on (α·AAᵀ + β·I)·z = r to relative residual `cg_tol`, at most `cg_iters`
            iterations (default: the observation's size). Noiseless observations need A of full
            row rank.
    """

    def __init__(self, forward: Callable[[torch.Tensor], torch.Tensor],
                 transpose: Callable[[torch.Tensor], torch.Tensor], x_shape: Sequence[int], *,
                 gram: Optional[float] = None, cg_tol: float = 1e-10,
                 cg_iters: Optional[int] = None):
        if not callable(forward) or not callable(transpose):
            raise ValueError("forward and transpose must be callables on batches")
        self.forward, self.adjoint, self.x_shape = forward, transpose, tuple(x_shape)
        if gram is not None and not gram > 0:
            raise ValueError(f"gram must be a positive number (AAᵀ = gram·I) or None, got {gram!r}")
        self.gram, self.cg_tol, self.cg_iters = gram, cg_tol, cg_iters

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)

    def transpose(self, y: torch.Tensor) -> torch.Tensor:
        return self.adjoint(y)

    def input_shape(self, y_shape: Sequence[int]) -> Tuple[int, ...]:
        return self.x_shape

    def gram_solve(self, r: torch.Tensor, alpha: float, beta: float) -> torch.Tensor:
        if self.gram is not None:
            return r / (alpha * self.gram + beta)
        return conjugate_gradients(lambda v: alpha * self(self.transpose(v)) + beta * v, r,
                                   self.cg_tol, self.cg_iters or r[0].numel())


def conjugate_gradients(apply: Callable[[torch.Tensor], torch.Tensor], r: torch.Tensor,
                        tol: float, max_iters: int) -> torch.Tensor:
    """Solve M·z = r row by row for a symmetric positive (semi)definite M given as `apply`."""
    z, residual = torch.zeros_like(r), r.clone()
    direction, norm = residual.clone(), inner(residual, residual)
    target = tol ** 2 * norm
    for _ in range(max_iters):
        if bool((norm <= target).all()):
            break
        image = apply(direction)
        curvature = inner(direction, image)
        step = torch.where(curvature > 0, norm / curvature.clamp(min=1e-300), 0.0)
        z = z + append_dims(step.to(r.dtype), r.ndim) * direction
        residual = residual - append_dims(step.to(r.dtype), r.ndim) * image
        new_norm = inner(residual, residual)
        ratio = torch.where(norm > 0, new_norm / norm.clamp(min=1e-300), 0.0)
        direction = residual + append_dims(ratio.to(r.dtype), r.ndim) * direction
        norm = new_norm
    return z
