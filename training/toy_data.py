"""2-D toy data sets, generated from a fixed seed per split (float32 `[n, 2]`)."""
from __future__ import annotations

import numpy as np
import torch

from models.analytic import GaussianMixture


def toy_gaussian_mixture() -> GaussianMixture:
    """The `gaussian_mixture` set's exact distribution: three anisotropic 2-D Gaussians."""
    return GaussianMixture(
        weights=[0.2, 0.3, 0.5],
        means=[[-1.5, -1.0], [1.5, -0.5], [0.0, 1.5]],
        variances=[[0.10, 0.30], [0.25, 0.08], [0.30, 0.15]])


def _swiss_roll(n: int, rng: np.random.Generator) -> np.ndarray:
    # The 2-D swiss roll: angle u ∈ [1.5π, 4.5π], radius u, small isotropic noise; scaled to ~[-2, 2].
    u = 1.5 * np.pi * (1 + 2 * rng.random(n))
    x = np.stack([u * np.cos(u), u * np.sin(u)], axis=1) + 0.5 * rng.standard_normal((n, 2))
    return x / 7.0


def _checkerboard(n: int, rng: np.random.Generator) -> np.ndarray:
    # Uniform on the 8 black cells of a 4×4 board covering [-2, 2]² ((row + col) even).
    cells = np.array([(r, c) for r in range(4) for c in range(4) if (r + c) % 2 == 0])
    chosen = cells[rng.integers(0, len(cells), n)]
    return chosen + rng.random((n, 2)) - 2.0


def _moons(n: int, rng: np.random.Generator) -> np.ndarray:
    # Two interleaving half circles with Gaussian noise 0.05, centred and scaled to unit-ish spread.
    upper = rng.random(n) < 0.5
    angle = np.pi * rng.random(n)
    x = np.where(upper[:, None], np.stack([np.cos(angle), np.sin(angle)], 1),
                 np.stack([1 - np.cos(angle), 0.5 - np.sin(angle)], 1))
    x = x + 0.05 * rng.standard_normal((n, 2))
    return (x - np.array([0.5, 0.25])) * 1.6


def _gaussian_mixture(n: int, rng: np.random.Generator) -> np.ndarray:
    generator = torch.Generator().manual_seed(int(rng.integers(2 ** 62)))
    return toy_gaussian_mixture().sample(n, generator).numpy()


TOY_SETS = {"swiss_roll": _swiss_roll, "checkerboard": _checkerboard, "moons": _moons,
            "gaussian_mixture": _gaussian_mixture}


def make_toy(name: str, n: int, seed: int) -> torch.Tensor:
    """`[n, 2]` float32 points of the named set."""
    points = TOY_SETS[name](n, np.random.default_rng(seed))
    return torch.as_tensor(points, dtype=torch.float32)
