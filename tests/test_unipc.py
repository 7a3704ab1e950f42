"""UniPC: exactness on a point mass, convergence orders (UniP-p alone and with UniC), NFE,
determinism, the bh1/bh2 variants, validation."""
import pytest
import torch

from fast_sampler_cases import DRIFT, GAUSSIAN, exact_flow, flow_errors, prior_only_state
from models.analytic import GaussianMixture
from samplers import sample
from samplers.schedules import TIME_SCHEDULES
from two_sample import MIXTURE_16D, NUM_SAMPLES, assert_matches_exact

POINT_MASS = GaussianMixture([1.0], [[0.7]], [1e-300])


@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("variant", ["bh1", "bh2"])
@pytest.mark.parametrize("schedule", sorted(TIME_SCHEDULES))
def test_exact_on_a_point_mass(any_sde, order, variant, schedule):
    # x̂_0 ≡ μ: every weight set integrates constants exactly, the corrector too.
    shape, seed = (8, 1), 3
    x_T = any_sde.prior_sampling(shape, generator=torch.Generator().manual_seed(seed),
                                 dtype=torch.float64)
    result = sample(POINT_MASS.score_fn(any_sde), any_sde, shape, "unipc", order=order,
                    variant=variant, schedule=schedule, num_steps=5, denoise=False,
                    dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    torch.testing.assert_close(result.x, exact_flow(any_sde, x_T, 1e-3, var=0.0),
                               rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("num_steps, denoise", [(1, True), (3, False), (12, True)])
def test_nfe_and_determinism(any_sde, num_steps, denoise):
    shape, seed = (4, 1), 9
    generator = torch.Generator().manual_seed(seed)
    result = sample(GAUSSIAN.score_fn(any_sde), any_sde, shape, "unipc", order=3,
                    generator=generator, dtype=torch.float64, num_steps=num_steps,
                    denoise=denoise)
    assert result.nfe == num_steps + denoise          # the corrector costs no evaluation
    assert torch.equal(generator.get_state(), prior_only_state(any_sde, shape, seed))


def test_bh2_predictor_alone_is_dpm_solver_2m(any_sde):
    # UniP-2 with B(h) = 1 − e^{−h} is DPM-Solver++(2M); with UniC it is not.
    options = dict(num_steps=7, dtype=torch.float64, denoise=False)
    unip = sample(GAUSSIAN.score_fn(any_sde), any_sde, (6, 1), "unipc", order=2, variant="bh2",
                  unic=False, generator=torch.Generator().manual_seed(2), **options)
    dpm = sample(GAUSSIAN.score_fn(any_sde), any_sde, (6, 1), "dpm_solver", order=2,
                 generator=torch.Generator().manual_seed(2), **options)
    torch.testing.assert_close(unip.x, dpm.x, rtol=1e-13, atol=1e-13)
    unipc = sample(GAUSSIAN.score_fn(any_sde), any_sde, (6, 1), "unipc", order=2, variant="bh2",
                   generator=torch.Generator().manual_seed(2), **options)
    assert not torch.allclose(unipc.x, dpm.x)


def test_matches_the_mixture(any_sde):
    result = sample(MIXTURE_16D.score_fn(any_sde), any_sde, (NUM_SAMPLES, 16), "unipc",
                    order=2, num_steps=50, generator=torch.Generator().manual_seed(0),
                    denoise=False)
    assert_matches_exact(result.x, MIXTURE_16D, any_sde, 1e-3)


def _never_called(x, t):
    raise AssertionError("the score was evaluated before the options were checked")


@pytest.mark.parametrize("options, match", [
    (dict(order=0), "order"), (dict(order=4), "order"), (dict(variant="bh3"), "variant"),
    (dict(variant="exact"), "variant"), (dict(unic=1), "unic"), (dict(schedule="cos"), "schedule"),
    (dict(num_steps=0), "num_steps"), (dict(eps=2.0), "eps"),
])
def test_bad_options(options, match):
    from tests.conftest import SDE_FACTORIES
    with pytest.raises(ValueError, match=match):
        sample(_never_called, SDE_FACTORIES["vp"](), (2, 1), "unipc", **options)


@pytest.mark.slow
@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("unic", [False, True])
@pytest.mark.parametrize("variant", ["bh1", "bh2"])
def test_converges_at_its_order(any_sde, order, unic, variant):
    # UniP-p: global error O(h^p); with UniC, O(h^{p+1}) (Zhao et al. 2023, Thm. 3.1, 3.2), for
    # either B(h); measured against the drifting target's closed form.
    errors = flow_errors(lambda n, g: sample(
        DRIFT.score_fn(any_sde), any_sde, (8, 1), "unipc", generator=g, order=order, unic=unic,
        variant=variant, dtype=torch.float64, num_steps=n, denoise=False,
        lower_order_final=False), any_sde, [80, 160, 320], batch=8, problem=DRIFT)
    rates = torch.tensor(errors[:-1]).div(torch.tensor(errors[1:])).log2()
    expected = order + unic
    assert bool((rates > expected - 0.15).all() & (rates < expected + 0.5).all()), (errors, rates)
