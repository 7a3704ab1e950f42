"""DDIM: exact on a point mass, η = 0 deterministic given x_T, η = 1 ancestral, NFE, options."""
import pytest
import torch

import sde_lib

from fast_sampler_cases import GAUSSIAN, exact_flow, flow_errors, prior_only_state
from models.analytic import GaussianMixture
from samplers import sample
from samplers.solvers.ddim import ddim_coefficients
from samplers.schedules import TIME_SCHEDULES, get_time_steps
from two_sample import MIXTURE_16D, NUM_SAMPLES, assert_matches_exact
from sde_lib import VPSDE

POINT_MASS = GaussianMixture([1.0], [[0.7]], [1e-300])


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_matches_the_mixture(any_sde, eta):
    # Enough steps that the first-order discretisation error is below what the test resolves
    # (at 50 steps it is not: the log-density test sees DDIM's samples as too concentrated).
    # On EDMSDE the default "uniform" schedule is uniform in σ (see tests/conftest.py): EDM's own.
    schedule = "edm" if isinstance(any_sde, sde_lib.EDMSDE) else "uniform"
    result = sample(MIXTURE_16D.score_fn(any_sde), any_sde, (NUM_SAMPLES, 16), "ddim", eta=eta,
                    num_steps=500, schedule=schedule, generator=torch.Generator().manual_seed(0),
                    denoise=False)
    assert_matches_exact(result.x, MIXTURE_16D, any_sde, 1e-3)


@pytest.mark.parametrize("schedule", sorted(TIME_SCHEDULES))
def test_eta0_is_exact_on_a_point_mass(any_sde, schedule):
    # x̂_0 ≡ μ, so each DDIM step is the exact flow whatever the step count.
    shape, seed = (16, 1), 3
    x_T = any_sde.prior_sampling(shape, generator=torch.Generator().manual_seed(seed),
                                 dtype=torch.float64)
    result = sample(POINT_MASS.score_fn(any_sde), any_sde, shape, "ddim", dtype=torch.float64,
                    generator=torch.Generator().manual_seed(seed), num_steps=3, schedule=schedule,
                    denoise=False)
    expected = exact_flow(any_sde, x_T, 1e-3, var=0.0)
    torch.testing.assert_close(result.x, expected, rtol=1e-10, atol=1e-10)


def test_eta0_is_deterministic_given_the_prior_sample(any_sde):
    shape, seed = (8, 1), 5
    global_state = torch.get_rng_state()
    generator = torch.Generator().manual_seed(seed)
    first = sample(GAUSSIAN.score_fn(any_sde), any_sde, shape, "ddim", generator=generator,
                   dtype=torch.float64, num_steps=10)
    # No random number is drawn after x_T: neither from the generator nor the global RNG.
    assert torch.equal(generator.get_state(), prior_only_state(any_sde, shape, seed))
    assert torch.equal(torch.get_rng_state(), global_state)
    second = sample(GAUSSIAN.score_fn(any_sde), any_sde, shape, "ddim", dtype=torch.float64,
                    generator=torch.Generator().manual_seed(seed), num_steps=10)
    assert torch.equal(first.x, second.x)


def test_eta_positive_draws_noise(any_sde):
    shape, seed = (8, 1), 5
    generator = torch.Generator().manual_seed(seed)
    sample(GAUSSIAN.score_fn(any_sde), any_sde, shape, "ddim", generator=generator,
           dtype=torch.float64, num_steps=10, eta=0.5)
    assert not torch.equal(generator.get_state(), prior_only_state(any_sde, shape, seed))


def test_eta1_is_the_posterior_step(any_sde):
    # c = (σ_s/σ_t)·√v makes DDIM's step the posterior q(x_s | x_t, x̂_0) (Ho et al. 2020, eq. 7):
    # mean (x_t + v·s)/r (Tweedie), variance v·σ_s²/σ_t², with x_t | x_s ~ N(r·x_s, v).
    times = get_time_steps(any_sde, "logsnr", 12, 1e-3)
    ratio, std = any_sde.transition_coeffs(times[1:], times[:-1])
    _, std_s = any_sde.marginal_coeffs(times[1:])
    _, std_t = any_sde.marginal_coeffs(times[:-1])
    expected = (1 / ratio, std ** 2 / ratio, std * std_s / std_t)
    for mine, theirs in zip(ddim_coefficients(any_sde, times, 1.0), expected):
        torch.testing.assert_close(mine, theirs, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("num_steps, denoise", [(1, False), (7, True), (7, False)])
def test_nfe(any_sde, num_steps, denoise):
    result = sample(GAUSSIAN.score_fn(any_sde), any_sde, (4, 1), "ddim", num_steps=num_steps,
                    denoise=denoise, eta=0.3)
    assert result.nfe == num_steps + denoise
    assert result.x.shape == (4, 1) and bool(torch.isfinite(result.x).all())


def test_image_shaped_batches(any_sde):
    means = torch.randn(2, 12, generator=torch.Generator().manual_seed(0))
    mixture = GaussianMixture([0.5, 0.5], means, [0.1, 0.2])
    result = sample(mixture.score_fn(any_sde), any_sde, (3, 3, 2, 2), "ddim", num_steps=5, eta=1.0)
    assert result.x.shape == (3, 3, 2, 2) and result.x.dtype == torch.float32


def _never_called(x, t):
    raise AssertionError("the score was evaluated before the options were checked")


@pytest.mark.parametrize("options, match", [
    (dict(eta=-0.1), "eta"), (dict(eta=1.5), "eta"), (dict(eta="0"), "eta"),
    (dict(schedule="cosine"), "schedule"), (dict(schedule="edm", rho=0.0), "rho"),
    (dict(num_steps=0), "num_steps"), (dict(eps=0.0), "eps"),
])
def test_bad_options(options, match):
    # Checked before any work, whatever the SDE (the eps cases lie beyond every T).
    with pytest.raises(ValueError, match=match):
        sample(_never_called, VPSDE(), (2, 1), "ddim", **options)


@pytest.mark.slow
@pytest.mark.parametrize("schedule", ["uniform", "logsnr"])
def test_eta0_converges_at_first_order(any_sde, schedule):
    steps = [20, 40, 80, 160]
    if schedule == "uniform" and isinstance(any_sde, sde_lib.EDMSDE):
        # Uniform in σ: at 20-160 steps Δσ ≥ 0.5 is not small against the data's std (rates
        # 0.1-0.5 there); the first-order regime starts at a few hundred (rates 0.86-0.96).
        steps = [200, 400, 800, 1600]
    errors = flow_errors(lambda n, g: sample(GAUSSIAN.score_fn(any_sde), any_sde, (32, 1), "ddim",
                                             generator=g, dtype=torch.float64, num_steps=n,
                                             schedule=schedule, denoise=False), any_sde, steps)
    rates = torch.tensor(errors[:-1]).div(torch.tensor(errors[1:])).log2()
    assert bool((rates > 0.8).all()) and bool((rates < 1.3).all()), (errors, rates)


def test_per_sample_generators_make_samples_independent_of_the_batch(any_sde):
    def run(seeds):
        generators = [torch.Generator().manual_seed(s) for s in seeds]
        return sample(GAUSSIAN.score_fn(any_sde), any_sde, (len(seeds), 1), "ddim", eta=1.0,
                      num_steps=5, generator=generators).x
    torch.testing.assert_close(run([4, 5, 6])[[0, 2]], run([4, 6]), rtol=0, atol=0)
