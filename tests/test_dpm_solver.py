"""DPM-Solver++ multistep (ODE and SDE): step orders, coefficients, exactness, determinism,
convergence order, per-sample noise."""
import pytest
import torch

from fast_sampler_cases import DRIFT, GAUSSIAN, exact_flow, flow_errors, prior_only_state
from models.analytic import GaussianMixture
from samplers import sample
from samplers.solvers.dpm_solver import step_orders
from samplers.multistep import plan_steps
from samplers.schedules import TIME_SCHEDULES, get_time_steps
from two_sample import MIXTURE_16D, NUM_SAMPLES, assert_matches_exact
from tests.conftest import SDE_FACTORIES
from sde_lib import VPSDE

POINT_MASS = GaussianMixture([1.0], [[0.7]], [1e-300])


def test_step_orders():
    # Warm-up from order 1; lower_order_final mirrors it at the end, at any step count.
    assert step_orders(6, 3, lower_order_final=False) == [1, 2, 3, 3, 3, 3]
    assert step_orders(6, 3, lower_order_final=True) == [1, 2, 3, 3, 2, 1]
    assert step_orders(20, 3, lower_order_final=True) == [1, 2] + [3] * 16 + [2, 1]
    assert step_orders(5, 2, lower_order_final=True) == [1, 2, 2, 2, 1]
    assert step_orders(1, 3, lower_order_final=True) == [1]


@pytest.mark.parametrize("order", [1, 2, 3])
def test_weights_integrate_constants_exactly(any_sde, order):
    # For x̂_0 ≡ m every order must give the exact −a_t·(e^{−h} − 1)·m: the weights sum to it.
    times = get_time_steps(any_sde, "quadratic", 9, 1e-3)
    orders = step_orders(9, order, lower_order_final=False)
    plan = plan_steps(any_sde, times, orders)
    mean_coeff, std = any_sde.marginal_coeffs(times)
    h = 0.5 * (any_sde.log_snr(times[1:]) - any_sde.log_snr(times[:-1]))
    torch.testing.assert_close(torch.tensor(plan.ratio, dtype=torch.float64), std[1:] / std[:-1],
                               rtol=1e-12, atol=0)
    sums = torch.tensor([sum(w) for w in plan.weights], dtype=torch.float64)
    torch.testing.assert_close(sums, -mean_coeff[1:] * torch.expm1(-h), rtol=1e-9, atol=1e-12)
    assert [len(w) for w in plan.weights] == orders


def test_lower_order_final_follows_denoise(any_sde):
    # Default: with the (first-order) Tweedie step last, no solver step is lowered.
    shape, seed = (8, 1), 2
    kwargs = dict(order=2, num_steps=6, dtype=torch.float64, denoise=False)

    def run(**options):
        return sample(GAUSSIAN.score_fn(any_sde), any_sde, shape, "dpm_solver", **kwargs,
                      generator=torch.Generator().manual_seed(seed), **options).x
    assert torch.equal(run(), run(lower_order_final=True))
    assert not torch.equal(run(), run(lower_order_final=False))
    kwargs["denoise"] = True
    assert torch.equal(run(), run(lower_order_final=False))


@pytest.mark.parametrize("order, num_steps", [(2, 100), (3, 50)])
def test_matches_the_mixture(any_sde, order, num_steps):
    result = sample(MIXTURE_16D.score_fn(any_sde), any_sde, (NUM_SAMPLES, 16), "dpm_solver",
                    order=order, num_steps=num_steps, generator=torch.Generator().manual_seed(0),
                    denoise=False)
    assert_matches_exact(result.x, MIXTURE_16D, any_sde, 1e-3)


@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("schedule", sorted(TIME_SCHEDULES))
def test_exact_on_a_point_mass(any_sde, order, schedule):
    shape, seed = (16, 1), 1
    x_T = any_sde.prior_sampling(shape, generator=torch.Generator().manual_seed(seed),
                                 dtype=torch.float64)
    result = sample(POINT_MASS.score_fn(any_sde), any_sde, shape, "dpm_solver", order=order,
                    schedule=schedule, dtype=torch.float64, num_steps=5, denoise=False,
                    generator=torch.Generator().manual_seed(seed))
    expected = exact_flow(any_sde, x_T, 1e-3, var=0.0)
    torch.testing.assert_close(result.x, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("num_steps, denoise", [(1, True), (4, False), (20, True)])
def test_nfe_and_determinism(any_sde, num_steps, denoise):
    shape, seed = (4, 1), 7
    generator = torch.Generator().manual_seed(seed)
    result = sample(GAUSSIAN.score_fn(any_sde), any_sde, shape, "dpm_solver", order=3,
                    generator=generator, dtype=torch.float64, num_steps=num_steps, denoise=denoise)
    assert result.nfe == num_steps + denoise
    assert torch.equal(generator.get_state(), prior_only_state(any_sde, shape, seed))


def _never_called(x, t):
    raise AssertionError("the score was evaluated before the options were checked")


@pytest.mark.parametrize("options, match", [
    (dict(order=0), "order"), (dict(order=4), "order"), (dict(order="2"), "order"),
    (dict(order=True), "order"), (dict(schedule="time_uniform"), "schedule"),
    (dict(schedule="edm", rho=-1.0), "rho"), (dict(num_steps=0), "num_steps"),
    (dict(eps=-1e-3), "eps"),
])
def test_bad_options(options, match):
    # Checked before any work, whatever the SDE (the eps cases lie beyond every T).
    with pytest.raises(ValueError, match=match):
        sample(_never_called, VPSDE(), (2, 1), "dpm_solver", **options)


def _rates(sde, steps, method="dpm_solver", **options):
    """log2 of the error ratios of DPM-Solver++ on the drifting target at `steps` (closed form)."""
    errors = flow_errors(lambda n, g: sample(
        DRIFT.score_fn(sde), sde, (8, 1), method, generator=g, dtype=torch.float64,
        num_steps=n, denoise=False, lower_order_final=False, **options), sde, steps, batch=8,
        problem=DRIFT)
    return torch.tensor(errors[:-1]).div(torch.tensor(errors[1:])).log2(), errors


@pytest.mark.slow
@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("schedule", ["logsnr", "edm"])
def test_converges_at_its_order(any_sde, order, schedule):
    # Global error O(h^k) for DPM-Solver++(k)M (Lu et al. 2022b, App. B), on uniform and on
    # non-uniform (EDM) steps in λ; measured against the drifting target's closed form.
    # (The EDM grid's steps, ρ = 7, are far from uniform; its rates approach k from below.)
    rates, errors = _rates(any_sde, [80, 160, 320], order=order, schedule=schedule)
    assert rates[0] > order - 0.3 and rates[1] > order - 0.15, (errors, rates)
    assert bool((rates < order + 0.5).all()), (errors, rates)


@pytest.mark.slow
@pytest.mark.parametrize("order", [1, 2, 3])
def test_unic_raises_the_order_by_one(any_sde, order):
    # UniC after DPM-Solver++(k)M (Zhao et al. 2023, Thm. 3.1): global error O(h^{k+1}), the
    # last step (no corrector) included, since its local error is O(h^{k+1}).
    rates, errors = _rates(any_sde, [80, 160, 320], order=order, method="unipc",
                           variant="bh2")
    assert bool((rates > order + 1 - 0.15).all()), (errors, rates)
    plain, _ = _rates(any_sde, [80, 160, 320], order=order)
    assert bool((plain < order + 0.5).all()), plain                 # without UniC: order k


@pytest.mark.parametrize("config, method, options", [
    (dict(method="ddim", eta=0.5, time_schedule="logsnr"), "ddim",
     dict(eta=0.5, schedule="logsnr")),
    (dict(method="heun", rho=5.0, s_churn=10.0, s_tmin=0.1, s_tmax=20.0, s_noise=1.0), "heun",
     dict(rho=5.0, s_churn=10.0, s_tmin=0.1, s_tmax=20.0, s_noise=1.0)),
    (dict(method="dpm_solver", order=3, time_schedule="quadratic"), "dpm_solver",
     dict(order=3, schedule="quadratic")),
    (dict(method="adaptive_sde", atol=0.01, rtol=0.05, safety=0.8), "adaptive_sde",
     dict(atol=0.01, rtol=0.05, safety=0.8)),
])
def test_build_sampler_passes_the_fast_sampler_options(config, method, options):
    from samplers import build_sampler
    sampler = build_sampler(config)
    assert sampler.method == method and sampler.options == options


def test_build_sampler_checks_the_time_schedule_name():
    from samplers import build_sampler
    with pytest.raises(ValueError, match="time_schedule"):
        build_sampler(dict(method="dpm_solver", time_schedule="cosine"))


@pytest.mark.parametrize("order", [1, 2, 3])
def test_sde_variant_is_exact_in_law_on_a_point_mass(any_sde, order):
    # For a point mass x̂_0 ≡ μ and every step is the exact transition of the reverse SDE: from
    # x_T ~ N(a_T·μ, σ_T²) every step keeps x_t ~ N(a_t·μ, σ_t²) (Gaussian, exactly).
    n, eps = 20000, 1e-3
    point = GaussianMixture([1.0], [[0.7]], [1e-300])
    result = sample(point.score_fn(any_sde), any_sde, (n, 1), "dpm_solver_sde", order=order,
                    num_steps=4, dtype=torch.float64, denoise=False, eps=eps,
                    generator=torch.Generator().manual_seed(order))
    mean_coeff, std = any_sde.marginal_coeffs(torch.tensor([eps], dtype=torch.float64))
    z = (result.x[:, 0] - mean_coeff * 0.7) / std
    # z ~ N(0, 1): mean within 5 standard errors, variance within 5 of sd √(2/n).
    assert abs(z.mean().item()) < 5 / n ** 0.5
    assert abs(z.var().item() - 1) < 5 * (2 / n) ** 0.5


def test_sde_variant_noise_is_per_sample():
    # With one generator per sample, sample i is the same whatever batch it is drawn in.
    sde = SDE_FACTORIES["vp"]()

    def run(indices):
        generators = [torch.Generator().manual_seed(50 + i) for i in indices]
        return sample(GAUSSIAN.score_fn(sde), sde, (len(indices), 1), "dpm_solver_sde",
                      order=3, num_steps=6, dtype=torch.float64, generator=generators).x
    torch.testing.assert_close(run(range(5))[[1, 4]], run([1, 4]), rtol=0, atol=0)
    assert not torch.equal(run([1]), run([2]))


@pytest.mark.parametrize("order, num_steps", [(2, 100), (3, 50)])
def test_sde_variant_matches_the_mixture(any_sde, order, num_steps):
    result = sample(MIXTURE_16D.score_fn(any_sde), any_sde, (NUM_SAMPLES, 16), "dpm_solver_sde",
                    order=order, num_steps=num_steps, generator=torch.Generator().manual_seed(4),
                    denoise=False)
    assert_matches_exact(result.x, MIXTURE_16D, any_sde, 1e-3)


@pytest.mark.parametrize("options, match", [(dict(eta=0.0), "eta"), (dict(eta=1.5), "eta"),
                                            (dict(order=4), "order"),
                                            (dict(lower_order_final="yes"), "lower_order_final")])
def test_sde_variant_bad_options(options, match):
    with pytest.raises(ValueError, match=match):
        sample(_never_called, SDE_FACTORIES["ve"](), (2, 1), "dpm_solver_sde", **options)


@pytest.mark.parametrize("num_steps, denoise", [(1, True), (5, False)])
def test_sde_variant_nfe(any_sde, num_steps, denoise):
    result = sample(GAUSSIAN.score_fn(any_sde), any_sde, (3, 1), "dpm_solver_sde", order=2,
                    num_steps=num_steps, denoise=denoise, dtype=torch.float64,
                    generator=torch.Generator().manual_seed(0))
    assert result.nfe == num_steps + denoise


@pytest.mark.parametrize("order", [1, 2, 3])
def test_explicit_times_are_the_named_schedule(any_sde, order):
    times = get_time_steps(any_sde, "logsnr", 7, 1e-3)
    named = sample(GAUSSIAN.score_fn(any_sde), any_sde, (4, 1), "dpm_solver", order=order,
                   num_steps=7, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    given = sample(GAUSSIAN.score_fn(any_sde), any_sde, (4, 1), "dpm_solver", order=order,
                   schedule=times, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    assert torch.equal(named.x, given.x) and named.nfe == given.nfe == 8
    with pytest.raises(ValueError, match="num_steps"):
        sample(_never_called, any_sde, (2, 1), "dpm_solver", schedule=times, num_steps=3)
    with pytest.raises(ValueError, match="decreasing"):
        sample(_never_called, any_sde, (2, 1), "dpm_solver", schedule=times.flip(0))
