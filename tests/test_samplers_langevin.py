"""Annealed Langevin dynamics (Song & Ermon 2019) on every SDE against exact mixture samples."""
import pytest
import torch

import samplers
from gaussian_law import GAUSSIAN, marginal, prior_variance
from samplers.solvers.langevin import DEFAULT_RELATIVE_STEP
from tests.conftest import SDE_FACTORIES
from two_sample import EPS, MIXTURES, assert_matches_exact, run_sampler

f64 = torch.float64


@pytest.mark.parametrize("dim", [2, pytest.param(16, marks=pytest.mark.slow)])
def test_annealed_langevin_matches_exact_samples(any_sde, dim):
    result = run_sampler(any_sde, MIXTURES[dim], "annealed_langevin")
    assert_matches_exact(result.x, MIXTURES[dim], any_sde, EPS)


def test_steps_follow_song_and_ermon():
    """αᵢ = step_lr·σ̄ᵢ²/σ̄_L² on levels geometric in σ̄; x is carried between levels as x/a."""
    sde = SDE_FACTORIES["vp"]()
    calls = []

    def score_fn(x, t):
        calls.append((x.clone(), t[0].item()))
        return torch.zeros_like(x)

    num_steps, step_lr = 5, 1e-4
    generator = torch.Generator().manual_seed(0)
    # num_steps levels: num_steps - 1 intervals between them.
    result = samplers.sample(score_fn, sde, (3, 2), "annealed_langevin", num_steps=num_steps - 1,
                             n_steps_each=2, step_lr=step_lr, denoise=False, dtype=f64,
                             generator=generator)
    assert result.nfe == len(calls) == num_steps * 2
    times = torch.tensor([t for _, t in calls[::2]], dtype=f64)
    lam = sde.log_snr(times)
    torch.testing.assert_close(lam[1:] - lam[:-1], (lam[-1] - lam[0]).expand(4) / 4)
    torch.testing.assert_close(times[[0, -1]], torch.tensor([sde.T, EPS], dtype=f64))
    # Replay the iteration with a zero score: x ← x + √(2ε)·z per step, then x ← x·a_{i+1}/a_i.
    mean_coeff, std = sde.marginal_coeffs(times)
    noise_to_signal = std / mean_coeff
    generator = torch.Generator().manual_seed(0)
    x = sde.prior_sampling((3, 2), generator=generator, dtype=f64)
    for i in range(num_steps):
        step = 0.5 * step_lr * std[i] ** 2 / noise_to_signal[-1] ** 2
        for _ in range(2):
            x = x + (2 * step).sqrt() * torch.randn(x.shape, generator=generator, dtype=f64)
        x = x * (mean_coeff[i + 1] / mean_coeff[i] if i + 1 < num_steps else 1)
    torch.testing.assert_close(result.x, x)


def test_default_step_is_the_papers_relative_step():
    """step_lr = 0.2·σ̄_L², Song & Ermon's 2e-5 at σ_L = 0.01; on VE that is ≈ 2e-5."""
    assert DEFAULT_RELATIVE_STEP == pytest.approx(0.2)
    sde = SDE_FACTORIES["ve"]()
    score_fn = MIXTURES[2].score_fn(sde)
    step_lr = 0.2 * sde.sigma(torch.tensor(EPS, dtype=f64)).item() ** 2
    explicit, default = (
        samplers.sample(score_fn, sde, (4, 2), "annealed_langevin", num_steps=10, dtype=f64,
                        generator=torch.Generator().manual_seed(1), **options)
        for options in (dict(step_lr=step_lr), {}))
    torch.testing.assert_close(explicit.x, default.x)


@pytest.mark.parametrize("options, field", [
    (dict(step_lr=0.0), "step_lr"), (dict(n_steps_each=0), "n_steps_each"),
    (dict(num_steps=0), "num_steps"), (dict(eps=-1e-3), "eps"),
])
def test_bad_options(options, field):
    with pytest.raises(ValueError, match=field):
        samplers.sample(lambda x, t: -x, SDE_FACTORIES["vp"](), (2, 2), "annealed_langevin",
                        **options)


def _levels(sde, num_steps):
    end_points = sde.log_snr(torch.tensor([sde.T, EPS], dtype=f64))
    return sde.t_from_log_snr(torch.linspace(*end_points.tolist(), num_steps, dtype=f64))


def _gaussian_law(sde, num_steps, n_steps_each, mean, var):
    """Law of the annealed-Langevin output on N(μ, v) data (see gaussian_law), from N(mean, var)."""
    times = _levels(sde, num_steps)
    mean_coeff, std = sde.marginal_coeffs(times)
    for i, t in enumerate(times.tolist()):
        m_t, v_t = marginal(sde, t)
        # ½·step_lr·σᵢ²/σ̄_L² with the default step_lr = 0.2·σ̄_L².
        step = 0.5 * DEFAULT_RELATIVE_STEP * std[i].item() ** 2
        for _ in range(n_steps_each):
            mean, var = mean - step * (mean - m_t) / v_t, (1 - step / v_t) ** 2 * var + 2 * step
        rescale = (mean_coeff[i + 1] / mean_coeff[i]).item() if i + 1 < num_steps else 1.0
        mean, var = rescale * mean, rescale ** 2 * var
    return mean, var


def test_sampler_output_has_the_predicted_gaussian_law(any_sde):
    n, num_steps, n_steps_each = 20_000, 30, 2
    result = samplers.sample(GAUSSIAN.score_fn(any_sde), any_sde, (n, 1), "annealed_langevin",
                             num_steps=num_steps - 1, n_steps_each=n_steps_each, denoise=False,
                             dtype=f64, generator=torch.Generator().manual_seed(0))
    mean, var = _gaussian_law(any_sde, num_steps, n_steps_each, 0.0, prior_variance(any_sde))
    assert abs(result.x.mean().item() - mean) <= 4 * (var / n) ** 0.5
    assert abs(result.x.var().item() - var) <= 4 * var * (2 / n) ** 0.5


def test_gaussian_law_converges_with_the_steps_per_level(any_sde):
    """The mean is carried exactly between levels; the frozen-in excess std falls like 1/steps."""
    target_mean, target_var = marginal(any_sde, EPS)
    errors = []
    for n_steps_each in (5, 20):
        mean, var = _gaussian_law(any_sde, 1000, n_steps_each, *marginal(any_sde, any_sde.T))
        assert abs(mean - target_mean) < 1e-9
        errors.append(abs(var ** 0.5 - target_var ** 0.5) / target_var ** 0.5)
    assert errors[1] <= errors[0] / 3 and errors[0] < 0.02
