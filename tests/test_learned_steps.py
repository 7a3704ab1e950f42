"""`samplers.learned_steps`: learned times lower a few-step solver's distance to the converged
probability flow of the exact Gaussian mixture, stay strictly decreasing from T to eps, and run
through the registry as any explicit schedule."""
import pytest
import torch

import samplers
import sde_lib
from models.analytic import GaussianMixture
from samplers.learned_steps import NamedTimes, fit_steps, fittable_methods, grid, logits
from samplers.schedules import get_time_steps

f64 = torch.float64
MIXTURE = GaussianMixture(torch.tensor([0.3, 0.7], dtype=f64),
                          torch.tensor([[-0.8, 0.2], [0.6, -0.4]], dtype=f64),
                          torch.tensor([[0.01, 0.02], [0.005, 0.01]], dtype=f64))


def distance_to_flow(sde, method, times, x_T, converged, **options):
    """RMS per coordinate between `method` on `times` and the converged flow, from x_T."""
    x = samplers.sample(MIXTURE.score_fn(sde), sde, tuple(x_T.shape), method, x_T=x_T,
                        schedule=times, dtype=f64, **options).x
    return (x - converged).pow(2).mean().sqrt().item()


@pytest.mark.parametrize("sde_name, method", [("vp", "ddim"), ("vp", "dpm_solver"),
                                              ("ve", "ddim")])
def test_learned_times_lower_the_distance_to_the_converged_flow(sde_name, method):
    sde = {"vp": sde_lib.VPSDE, "ve": sde_lib.VESDE}[sde_name]()
    score = MIXTURE.score_fn(sde)
    learned = fit_steps(score, sde, (512, 2), method, 5, iterations=60, lr=0.1, dtype=f64)
    # Judged here, on 2000 fresh draws against DOP853 at 1e-10 (not the fit's own teacher).
    x_T = sde.prior_sampling((2000, 2), generator=torch.Generator().manual_seed(123), dtype=f64)
    converged = samplers.sample(score, sde, (2000, 2), "ode", x_T=x_T, dtype=f64, rtol=1e-10,
                                atol=1e-10, ode_method="DOP853").x
    num_steps = learned.times.numel() - 1
    default_name = samplers.options.SCHEMA[method]["schedule"].default
    default = get_time_steps(sde, default_name, num_steps, 1e-3)
    before = distance_to_flow(sde, method, default, x_T, converged)
    after = distance_to_flow(sde, method, learned.times, x_T, converged)
    assert samplers.sample(score, sde, (4, 2), method, nfe=5, dtype=f64).nfe == num_steps + 1
    assert after < before, (before, after)
    assert learned.train_learned <= learned.train_default


@pytest.mark.parametrize("scale", [0.0, 1.0, 30.0])
def test_every_logit_gives_strictly_decreasing_times_from_T_to_eps(any_sde, scale):
    theta = scale * torch.randn(7, generator=torch.Generator().manual_seed(0), dtype=f64)
    times = grid(any_sde, theta, 1e-3)
    assert times[0] == any_sde.T and times[-1] == 1e-3 and times.numel() == 8
    assert bool((times[1:] < times[:-1]).all())
    if scale <= 1:        # inside the logits' bound, `logits` inverts `grid`
        again = grid(any_sde, logits(any_sde, times), 1e-3)
        torch.testing.assert_close(again, times, rtol=1e-9, atol=0)


def test_learned_times_are_monotone_inside_eps_T():
    sde = sde_lib.VPSDE()
    learned = fit_steps(MIXTURE.score_fn(sde), sde, (64, 2), "unipc", 6, iterations=5,
                        dtype=f64, num_holdout=64)
    times = learned.times
    assert times[0] == sde.T and times[-1] == 1e-3 and bool((times[1:] < times[:-1]).all())
    assert learned.start in ("default", "pilot") and learned.nfe > 0


def test_named_times_run_as_their_tensor_and_show_their_name():
    sde = sde_lib.VPSDE()
    times = get_time_steps(sde, "edm", 4, 1e-3)
    x_T = sde.prior_sampling((8, 2), generator=torch.Generator().manual_seed(1), dtype=f64)
    plain = samplers.sample(MIXTURE.score_fn(sde), sde, (8, 2), "dpm_solver", x_T=x_T,
                            schedule=times, dtype=f64)
    named = samplers.sample(MIXTURE.score_fn(sde), sde, (8, 2), "dpm_solver", x_T=x_T,
                            schedule=NamedTimes(times, "fitted:abc"), dtype=f64)
    torch.testing.assert_close(named.x, plain.x, rtol=0, atol=0)
    configured = samplers.config.ConfiguredSampler(
        "dpm_solver", {"schedule": NamedTimes(times, "fitted:abc")})
    assert configured.resolved()["schedule"] == "fitted:abc"


def test_fitted_by_name_outside_a_workdir_is_refused_with_a_line():
    with pytest.raises(ValueError, match="fitted"):
        samplers.sample(lambda x, t: -x, sde_lib.VPSDE(), (2, 2), "ddim", schedule="fitted")


def test_only_fixed_step_methods_with_a_schedule_are_fitted():
    assert {"ddim", "dpm_solver", "unipc", "heun"} <= set(fittable_methods())
    assert "pc" not in fittable_methods() and "ode" not in fittable_methods()
    with pytest.raises(ValueError, match="no learnable grid"):
        fit_steps(lambda x, t: -x, sde_lib.VPSDE(), (2, 2), "pc", 5)
    with pytest.raises(ValueError, match="order"):
        fit_steps(lambda x, t: -x, sde_lib.VPSDE(), (2, 2), "dpm_solver", 5,
                  options={"order": 7})
