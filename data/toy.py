"""2-D toy data sets, generated from a fixed seed per split (float32 `[n, 2]`).

Where a class is natural the generator also returns it (int64 `[n]`): the mixture component
that drew the point (`gaussian_mixture`), the half circle (`moons`); else None.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import torch

from models.analytic import GaussianMixture


def toy_gaussian_mixture() -> GaussianMixture:
    """The `gaussian_mixture` set's exact distribution: three anisotropic 2-D Gaussians."""
    return GaussianMixture(
        weights=[0.2, 0.3, 0.5],
        means=[[-1.5, -1.0], [1.5, -0.5], [0.0, 1.5]],
        variances=[[0.10, 0.30], [0.25, 0.08], [0.30, 0.15]])


Labeled = Tuple[np.ndarray, Optional[np.ndarray]]
TOY_NUM_CLASSES = {"swiss_roll": 0, "checkerboard": 0, "moons": 2, "gaussian_mixture": 3}


def _swiss_roll(n: int, rng: np.random.Generator) -> Labeled:
    # The 2-D swiss roll: angle u ∈ [1.5π, 4.5π], radius u, small isotropic noise; scaled to
    # ~[-2, 2].
    u = 1.5 * np.pi * (1 + 2 * rng.random(n))
    x = np.stack([u * np.cos(u), u * np.sin(u)], axis=1) + 0.5 * rng.standard_normal((n, 2))
    return x / 7.0, None


def _checkerboard(n: int, rng: np.random.Generator) -> Labeled:
    # Uniform on the 8 black cells of a 4×4 board covering [-2, 2]² ((row + col) even).
    cells = np.array([(r, c) for r in range(4) for c in range(4) if (r + c) % 2 == 0])
    chosen = cells[rng.integers(0, len(cells), n)]
    return chosen + rng.random((n, 2)) - 2.0, None


def _moons(n: int, rng: np.random.Generator) -> Labeled:
    # Two interleaving half circles with Gaussian noise 0.05, centred and scaled to unit-ish spread.
    # Class 0: the upper moon, class 1: the lower one.
    upper = rng.random(n) < 0.5
    angle = np.pi * rng.random(n)
    x = np.where(upper[:, None], np.stack([np.cos(angle), np.sin(angle)], 1),
                 np.stack([1 - np.cos(angle), 0.5 - np.sin(angle)], 1))
    x = x + 0.05 * rng.standard_normal((n, 2))
    return (x - np.array([0.5, 0.25])) * 1.6, (~upper).astype(np.int64)


def _gaussian_mixture(n: int, rng: np.random.Generator) -> Labeled:
    # The draws of `GaussianMixture.sample` (components, then noise), keeping the components.
    generator = torch.Generator().manual_seed(int(rng.integers(2 ** 62)))
    mixture = toy_gaussian_mixture()
    components = torch.multinomial(mixture.weights, n, replacement=True, generator=generator)
    noise = torch.randn(n, mixture.dim, generator=generator, dtype=torch.float64)
    x = mixture.means[components] + mixture.variances[components].sqrt() * noise
    return x.numpy(), components.numpy()


TOY_SETS = {"swiss_roll": _swiss_roll, "checkerboard": _checkerboard, "moons": _moons,
            "gaussian_mixture": _gaussian_mixture}


def make_toy_labeled(name: str, n: int, seed: int) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """`[n, 2]` float32 points of the named set and their int64 `[n]` classes (or None)."""
    points, labels = TOY_SETS[name](n, np.random.default_rng(seed))
    labels = None if labels is None else torch.as_tensor(labels, dtype=torch.int64)
    return torch.as_tensor(points, dtype=torch.float32), labels
