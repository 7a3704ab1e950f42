"""Time-step schedules: end points, monotonicity, and the quantity each one makes uniform."""
import pytest
import torch

from samplers.schedules import TIME_SCHEDULES, get_time_steps
from sde_lib import VPSDE


@pytest.mark.parametrize("name", sorted(TIME_SCHEDULES))
@pytest.mark.parametrize("num_steps", [1, 7, 100])
def test_end_points_and_order(any_sde, name, num_steps):
    eps = 1e-3
    times = get_time_steps(any_sde, name, num_steps, eps)
    assert times.dtype == torch.float64 and times.shape == (num_steps + 1,)
    assert times[0].item() == any_sde.T and times[-1].item() == eps
    assert bool((times[1:] < times[:-1]).all())


def _assert_uniform(values):
    gaps = values[1:] - values[:-1]
    torch.testing.assert_close(gaps, gaps.mean().expand_as(gaps), rtol=1e-9, atol=1e-12)


def test_uniform_is_linear_in_t(any_sde):
    # The grid of pc and of conditioning: T, T − (T − eps)/20, …, eps, exactly.
    expected = torch.linspace(any_sde.T, 1e-3, 21, dtype=torch.float64)
    torch.testing.assert_close(get_time_steps(any_sde, "uniform", 20, 1e-3), expected,
                               rtol=0, atol=0)


def test_logsnr_is_uniform_in_log_snr(any_sde):
    _assert_uniform(any_sde.log_snr(get_time_steps(any_sde, "logsnr", 25, 1e-3)))


@pytest.mark.parametrize("rho", [1.0, 3.0, 7.0])
def test_edm_is_uniform_in_root_of_noise_to_signal(any_sde, rho):
    times = get_time_steps(any_sde, "edm", 25, 1e-3, rho=rho)
    mean_coeff, std = any_sde.marginal_coeffs(times)
    _assert_uniform((std / mean_coeff) ** (1 / rho))


def test_edm_large_rho_tends_to_logsnr(any_sde):
    # σ̄^{1/ρ} = exp(−λ/(2ρ)) ≈ 1 − λ/(2ρ): uniform in σ̄^{1/ρ} → uniform in λ as ρ → ∞.
    edm = get_time_steps(any_sde, "edm", 10, 1e-3, rho=1e5)
    logsnr = get_time_steps(any_sde, "logsnr", 10, 1e-3)
    torch.testing.assert_close(edm, logsnr, rtol=1e-3, atol=1e-6)


def test_quadratic_is_uniform_in_sqrt_t(any_sde):
    _assert_uniform(get_time_steps(any_sde, "quadratic", 30, 1e-3).sqrt())


def test_edm_matches_karras_vp_levels():
    # Karras et al. 2022, eq. 5 with σ_max, σ_min of the VP SDE: first and last levels are exact.
    from sde_lib import VPSDE
    sde = VPSDE()
    times = get_time_steps(sde, "edm", 5, 1e-3, rho=7.0)
    mean_coeff, std = sde.marginal_coeffs(times)
    sigma = std / mean_coeff
    s_max, s_min = sigma[0].item(), sigma[-1].item()
    expected = torch.tensor([(s_max ** (1 / 7) + i / 5 * (s_min ** (1 / 7) - s_max ** (1 / 7))) ** 7
                             for i in range(6)], dtype=torch.float64)
    torch.testing.assert_close(sigma, expected, rtol=1e-10, atol=0)


@pytest.mark.parametrize("kwargs, match", [
    (dict(name="cosine"), "schedule"),
    (dict(name="edm", rho=0.0), "rho"),
    (dict(name="edm", rho=-2.0), "rho"),
    (dict(num_steps=0), "num_steps"),
    (dict(eps=0.0), "eps"),
    (dict(eps=100.0), "eps"),   # beyond every T (EDM: 80)
])
def test_bad_options(kwargs, match):
    # Checked before any work, whatever the SDE (the eps cases lie beyond every T).
    args = dict(name="uniform", num_steps=10, eps=1e-3) | kwargs
    with pytest.raises(ValueError, match=match):
        get_time_steps(VPSDE(), args.pop("name"), args.pop("num_steps"), args.pop("eps"), **args)


def test_unknown_schedule_lists_choices(any_sde):
    with pytest.raises(ValueError) as info:
        get_time_steps(any_sde, "linear", 10, 1e-3)
    for name in TIME_SCHEDULES:
        assert repr(name) in str(info.value)
