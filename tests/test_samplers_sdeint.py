"""torchsde reverse-SDE sampling: mixture samples, solvers, adaptive steps, NFE and options."""
import pytest
import torch

import samplers
from gaussian_law import GAUSSIAN, prior_variance, propagate
from samplers.solvers.predictors import PREDICTORS
from tests.conftest import SDE_FACTORIES
from two_sample import EPS, MIXTURE_2D, MIXTURES, assert_matches_exact, run_sampler

f64 = torch.float64


@pytest.mark.parametrize("dim", [2, pytest.param(16, marks=pytest.mark.slow)])
def test_sdeint_matches_exact_samples(any_sde, dim):
    result = run_sampler(any_sde, MIXTURES[dim], "sdeint")
    assert result.nfe == any_sde.N
    assert_matches_exact(result.x, MIXTURES[dim], any_sde, EPS)


@pytest.mark.slow
@pytest.mark.parametrize("options, nfe_per_step", [
    (dict(sde_method="milstein", num_steps=500), 1),
    (dict(sde_method="srk", num_steps=100), None),
    (dict(adaptive=True, rtol=1e-2, atol=1e-2, num_steps=100), None),
])
def test_other_solvers_match_exact_samples(options, nfe_per_step):
    sde = SDE_FACTORIES["vp"]()
    result = run_sampler(sde, MIXTURE_2D, "sdeint", **options)
    if nfe_per_step is not None:
        assert result.nfe == nfe_per_step * options["num_steps"]
    assert_matches_exact(result.x, MIXTURE_2D, sde, EPS)


def test_euler_takes_num_steps_exactly_and_reproduces():
    sde = SDE_FACTORIES["ve"]()
    calls = []

    def score_fn(x, t):
        calls.append(t[0].item())
        return MIXTURE_2D.score(x, t, sde)

    first = samplers.sample(score_fn, sde, (5, 2), "sdeint", num_steps=7, dtype=f64, denoise=False,
                            generator=torch.Generator().manual_seed(2))
    assert first.nfe == len(calls) == 7
    # Steps are (T − eps)/7 lengthened by 1e-9 relative (see sdeint_sampler).
    torch.testing.assert_close(torch.tensor(calls, dtype=f64),
                               torch.linspace(sde.T, EPS, 8, dtype=f64)[:-1], rtol=0, atol=1e-8)
    second = samplers.sample(MIXTURE_2D.score_fn(sde), sde, (5, 2), "sdeint", num_steps=7,
                             dtype=f64, denoise=False, generator=torch.Generator().manual_seed(2))
    assert torch.equal(first.x, second.x)


@pytest.mark.parametrize("options, field", [
    (dict(sde_method="heun"), "sde_method"), (dict(num_steps=0), "num_steps"), (dict(eps=0), "eps"),
    (dict(rtol=0.0), "rtol"),
])
def test_bad_options(options, field):
    with pytest.raises(ValueError, match=field):
        samplers.sample(lambda x, t: -x, SDE_FACTORIES["vp"](), (2, 2), "sdeint", **options)


def test_euler_has_the_law_of_euler_maruyama_steps(any_sde):
    """On N(μ, v) data torchsde's Euler steps are the "euler_maruyama" predictor's: same law."""
    n, num_steps = 20_000, 30
    result = samplers.sample(GAUSSIAN.score_fn(any_sde), any_sde, (n, 1), "sdeint",
                             num_steps=num_steps, denoise=False, dtype=f64,
                             generator=torch.Generator().manual_seed(0))
    times = torch.linspace(any_sde.T, EPS, num_steps + 1, dtype=f64)
    mean, var = propagate(any_sde, times, PREDICTORS["euler_maruyama"](any_sde, times),
                          0.0, prior_variance(any_sde))
    assert abs(result.x.mean().item() - mean) <= 4 * (var / n) ** 0.5
    assert abs(result.x.var().item() - var) <= 4 * var * (2 / n) ** 0.5
