"""Correctors: Song et al.'s α for every SDE, and Langevin steps that leave p_t invariant."""
import pytest
import torch

from gaussian_law import GAUSSIAN, marginal
from samplers.common import CountedScore
from samplers.solvers.correctors import CORRECTORS, langevin_alpha
from tests.conftest import SDE_FACTORIES
from two_sample import MIXTURE_2D, NUM_SAMPLES, assert_matches_exact, exact_samples

f64 = torch.float64


def test_langevin_alpha_is_ddpm_alpha_for_vp_and_one_for_ve():
    vp = SDE_FACTORIES["vp"]()
    index = torch.tensor([100, 500, 999])
    alpha = langevin_alpha(vp, index.to(f64) / (vp.N - 1))
    # DDPM's αᵢ = 1 − βᵢ; exp(−∫β) over one step differs from it at second order in β/N ≤ 0.02.
    torch.testing.assert_close(alpha, vp.alphas[index], rtol=0, atol=(vp.beta_1 / vp.N) ** 2)
    assert torch.all(langevin_alpha(SDE_FACTORIES["ve"](), torch.rand(5, dtype=f64)) == 1)
    torch.testing.assert_close(langevin_alpha(SDE_FACTORIES["subvp"](), index.to(f64) / 999), alpha)


@pytest.mark.parametrize("corrector", ["langevin", "ald"])
def test_correctors_leave_p_t_invariant(any_sde, corrector):
    """Langevin steps at a fixed t started from exact p_t samples stay (close to) p_t."""
    t = 0.3
    x = exact_samples(MIXTURE_2D, any_sde, t, NUM_SAMPLES, torch.Generator().manual_seed(3))
    score_fn = CountedScore(MIXTURE_2D.score_fn(any_sde))
    times = torch.tensor([t], dtype=f64)
    scale = CORRECTORS[corrector].scale(any_sde, times, 0.16).item()
    x = CORRECTORS[corrector].step(score_fn, x, times.expand(NUM_SAMPLES), scale, 40,
                                   torch.Generator().manual_seed(4))
    assert score_fn.nfe == 40
    assert_matches_exact(x, MIXTURE_2D, any_sde, t)


@pytest.mark.parametrize("corrector", ["langevin", "ald"])
def test_gaussian_law_of_langevin_steps(any_sde, corrector):
    """On N(μ, v) data, k steps of size ε map the variance q to (1 − ε/V)²q + 2ε, the mean stays.

    "ald": ε = 2α(snr·σ_t)². "langevin": ε = 2α·snr²·(mean‖z‖/mean‖s‖)², which in 1-D with many
    samples is 2α·snr²·V²/q (E|z| = √(2/π), E|s| = √(2/π)·√q/V). 20000 samples: within 4 SE.
    """
    n, t, k, snr = 20_000, 0.3, 60, 0.16
    m_t, v_t = marginal(any_sde, t)
    times = torch.tensor([t], dtype=f64)
    x = m_t + v_t ** 0.5 * torch.randn(n, 1, generator=torch.Generator().manual_seed(0), dtype=f64)
    scale = CORRECTORS[corrector].scale(any_sde, times, snr).item()
    x = CORRECTORS[corrector].step(GAUSSIAN.score_fn(any_sde), x, times.expand(n), scale, k,
                                   torch.Generator().manual_seed(1))
    var = v_t
    for _ in range(k):
        step = scale * v_t ** 2 / var if corrector == "langevin" else scale
        var = (1 - step / v_t) ** 2 * var + 2 * step
    assert abs(x.mean().item() - m_t) <= 4 * (var / n) ** 0.5
    assert abs(x.var().item() - var) <= 4 * var * (2 / n) ** 0.5


def test_step_sizes_are_song_et_al_s(any_sde):
    """"langevin": 2α·snr² (times (‖z‖/‖s‖)² at run time); "ald": 2α·(snr·σ_t)²."""
    times, snr = torch.tensor([0.01, 0.5, 1.0], dtype=f64), 0.2
    alpha = langevin_alpha(any_sde, times)
    _, std = any_sde.marginal_coeffs(times)
    torch.testing.assert_close(CORRECTORS["langevin"].scale(any_sde, times, snr),
                               2 * alpha * snr ** 2)
    torch.testing.assert_close(CORRECTORS["ald"].scale(any_sde, times, snr),
                               2 * alpha * (snr * std) ** 2)
