"""EDM Heun sampler: NFE 2·num_steps + 1, exact on a point mass, churn plan, determinism, options."""
import math

import pytest
import torch

from fast_sampler_cases import GAUSSIAN, exact_flow, flow_errors, prior_only_state
from models.analytic import GaussianMixture
from samplers import sample
from samplers.solvers.heun import heun_plan
from samplers.schedules import get_time_steps
from sde_lib import EDMSDE, VESDE, VPSDE
from two_sample import MIXTURE_16D, NUM_SAMPLES, assert_matches_exact

POINT_MASS = GaussianMixture([1.0], [[0.7]], [1e-300])


@pytest.mark.parametrize("num_steps", [1, 2, 17])
@pytest.mark.parametrize("denoise", [True, False])
def test_nfe_is_2n_plus_the_final_step(num_steps, denoise):
    # num_steps intervals between num_steps + 1 levels: EDM's 18 levels are 35 evaluations.
    sde = VPSDE()
    result = sample(GAUSSIAN.score_fn(sde), sde, (4, 1), "heun", num_steps=num_steps,
                    denoise=denoise)
    assert result.nfe == 2 * num_steps + denoise
    assert bool(torch.isfinite(result.x).all())


def test_matches_the_mixture(any_sde):
    result = sample(MIXTURE_16D.score_fn(any_sde), any_sde, (NUM_SAMPLES, 16), "heun",
                    num_steps=100, generator=torch.Generator().manual_seed(0), denoise=False)
    assert_matches_exact(result.x, MIXTURE_16D, any_sde, 1e-3)


@pytest.mark.parametrize("sde", [VPSDE(), VESDE()], ids=["vp", "ve"])
def test_churn_matches_the_mixture(sde):
    # EDM's ImageNet churn settings (S_churn 40, S_tmin 0.05, S_tmax 50); with S_noise = 1, as the
    # score is exact. Churned steps converge more slowly than plain Heun: 400 levels.
    result = sample(MIXTURE_16D.score_fn(sde), sde, (NUM_SAMPLES, 16), "heun", num_steps=400,
                    s_churn=40.0, s_tmin=0.05, s_tmax=50.0,
                    generator=torch.Generator().manual_seed(0), denoise=False)
    assert_matches_exact(result.x, MIXTURE_16D, sde, 1e-3)


@pytest.mark.parametrize("schedule", ["edm", "logsnr", "uniform"])
def test_exact_on_a_point_mass(any_sde, schedule):
    # D ≡ μ: the flow in σ̄ is a straight line, x̄ − μ ∝ σ̄, which Euler and Heun follow exactly.
    shape, seed = (16, 1), 2
    x_T = any_sde.prior_sampling(shape, generator=torch.Generator().manual_seed(seed),
                                 dtype=torch.float64)
    result = sample(POINT_MASS.score_fn(any_sde), any_sde, shape, "heun", dtype=torch.float64,
                    generator=torch.Generator().manual_seed(seed), num_steps=4, schedule=schedule,
                    denoise=False)
    expected = exact_flow(any_sde, x_T, 1e-3, var=0.0)
    torch.testing.assert_close(result.x, expected, rtol=1e-10, atol=1e-10)


def test_no_churn_is_deterministic(any_sde):
    shape, seed = (8, 1), 4
    generator = torch.Generator().manual_seed(seed)
    sample(GAUSSIAN.score_fn(any_sde), any_sde, shape, "heun", generator=generator,
           dtype=torch.float64, num_steps=6)
    assert torch.equal(generator.get_state(), prior_only_state(any_sde, shape, seed))


def test_churn_plan(any_sde):
    # Karras et al. 2022, Alg. 2: γ_i = min(S_churn/N, √2 − 1) where S_tmin ≤ σ̄_i ≤ S_tmax.
    num_levels, s_churn = 10, 4.0
    times = get_time_steps(any_sde, "edm", num_levels - 1, 1e-3)
    mean_coeff, std = any_sde.marginal_coeffs(times)
    sigmas = std / mean_coeff
    # Bounds between levels, so that round-off cannot move a level across one.
    s_tmin, s_tmax = (sigmas[6] * sigmas[7]).sqrt().item(), (sigmas[1] * sigmas[2]).sqrt().item()
    plan = heun_plan(any_sde, times, s_churn, s_tmin, s_tmax, s_noise=1.0)
    inside = torch.zeros(num_levels - 1, dtype=torch.bool)
    inside[2:7] = True
    gamma = min(s_churn / num_levels, math.sqrt(2) - 1)
    expected = torch.where(inside, sigmas[:-1] * (1 + gamma), sigmas[:-1])
    torch.testing.assert_close(plan.sigma_hat, expected, rtol=1e-12, atol=0)
    churn_std = (expected ** 2 - sigmas[:-1] ** 2).sqrt()
    torch.testing.assert_close(plan.churn_std, churn_std, rtol=1e-9, atol=0)
    # Each churned level's time is where σ̄ = σ̂.
    mean_hat, std_hat = any_sde.marginal_coeffs(plan.t_hat)
    torch.testing.assert_close(std_hat / mean_hat, plan.sigma_hat, rtol=1e-8, atol=0)


def test_churn_is_capped_at_the_prior(any_sde):
    times = get_time_steps(any_sde, "edm", 4, 1e-3)
    plan = heun_plan(any_sde, times, 100.0, 0.0, float("inf"), 1.0)
    assert plan.t_hat[0].item() == any_sde.T and plan.churn_std[0].item() == 0
    assert bool((plan.t_hat[1:] > times[1:-1]).all()) and bool((plan.t_hat <= any_sde.T).all())


def test_churn_draws_noise(any_sde):
    shape, seed = (8, 1), 4
    generator = torch.Generator().manual_seed(seed)
    sample(GAUSSIAN.score_fn(any_sde), any_sde, shape, "heun", generator=generator,
           num_steps=6, s_churn=5.0)
    prior_only = prior_only_state(any_sde, shape, seed, torch.float32)
    assert not torch.equal(generator.get_state(), prior_only)


def _never_called(x, t):
    raise AssertionError("the score was evaluated before the options were checked")


@pytest.mark.parametrize("options, match", [
    (dict(num_steps=0), "num_steps"), (dict(rho=0.0), "rho"), (dict(rho=-7.0), "rho"),
    (dict(schedule="sigmoid"), "schedule"), (dict(s_churn=-1.0), "s_churn"),
    (dict(s_noise=-1.0), "s_noise"), (dict(s_tmin=2.0, s_tmax=1.0), "s_tmax"),
    (dict(eps=100.0), "eps"),   # beyond every T, EDM's σ_max = 80 included
])
def test_bad_options(options, match):
    # Checked before any work; only eps depends on the SDE (EDM's T = 80 is the largest).
    sde = EDMSDE() if "eps" in options else VPSDE()
    with pytest.raises(ValueError, match=match):
        sample(_never_called, sde, (2, 1), "heun", **options)


@pytest.mark.slow
def test_converges_at_second_order(any_sde):
    steps = [10, 20, 40, 80]
    errors = flow_errors(lambda n, g: sample(GAUSSIAN.score_fn(any_sde), any_sde, (32, 1), "heun",
                                             generator=g, dtype=torch.float64, num_steps=n,
                                             denoise=False), any_sde, steps)
    rates = torch.tensor(errors[:-1]).div(torch.tensor(errors[1:])).log2()
    assert bool((rates[1:] > 1.8).all()) and bool((rates < 2.6).all()), (errors, rates)


def test_per_sample_generators_make_samples_independent_of_the_batch(any_sde):
    def run(seeds):
        generators = [torch.Generator().manual_seed(s) for s in seeds]
        return sample(GAUSSIAN.score_fn(any_sde), any_sde, (len(seeds), 1), "heun", s_churn=5.0,
                      num_steps=5, generator=generators).x
    torch.testing.assert_close(run([4, 5, 6])[[0, 2]], run([4, 6]), rtol=0, atol=0)
