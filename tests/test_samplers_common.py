"""Shared sampler helpers: Tweedie denoising, the time grid, NFE counting."""
import torch

from models.analytic import GaussianMixture
from samplers.common import CountedScore, time_grid, tweedie_denoise
from tests.conftest import SDE_FACTORIES

f64 = torch.float64


def test_denoise_is_tweedie_for_gaussian_data():
    """E[x_0 | x_t] = μ + a·v·(x − aμ)/(a²v + σ²) for N(μ, v) data."""
    mu, var = 0.7, 0.09
    gaussian = GaussianMixture([1.0], [[mu]], [var])
    for sde in (f() for f in SDE_FACTORIES.values()):
        t = torch.full((6,), 0.2, dtype=f64)
        x = torch.linspace(-2, 2, 6, dtype=f64)[:, None]
        a, std = sde.marginal_coeffs(t)
        expected = mu + (a * var / (a ** 2 * var + std ** 2))[:, None] * (x - a[:, None] * mu)
        torch.testing.assert_close(tweedie_denoise(gaussian.score_fn(sde), sde, x, t), expected)


def test_time_grid_runs_from_T_to_eps():
    sde = SDE_FACTORIES["ve"]()
    times = time_grid(sde, 4, 1e-3)
    expected = torch.tensor([1.0, 0.75025, 0.5005, 0.25075, 1e-3], dtype=f64)
    torch.testing.assert_close(times, expected)


def test_counted_score_counts_calls_and_casts_time():
    seen = []
    counted = CountedScore(lambda x, t: seen.append(t.dtype) or x)
    for _ in range(3):
        counted(torch.zeros(2, 1), torch.zeros(2, dtype=f64))
    assert counted.nfe == 3 and seen == [torch.float32] * 3
