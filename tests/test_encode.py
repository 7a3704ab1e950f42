"""Probability-flow encoding, decoding and spherical interpolation of latents."""
import math

import pytest
import torch

import samplers
from tests.conftest import SDE_FACTORIES
from two_sample import EPS, MIXTURE_2D, NUM_SAMPLES, assert_matches_exact, exact_samples

f64 = torch.float64


def round_trip_error(sde, tol, n=64):
    x = exact_samples(MIXTURE_2D, sde, EPS, n, torch.Generator().manual_seed(0))
    score_fn = MIXTURE_2D.score_fn(sde)
    encoded = samplers.encode(score_fn, sde, x, eps=EPS, rtol=tol, atol=tol)
    decoded = samplers.decode(score_fn, sde, encoded.z, eps=EPS, rtol=tol, atol=tol)
    assert encoded.z.shape == x.shape and encoded.nfe > 0 and decoded.nfe > 0
    return (decoded.x - x).abs().max().item()


def test_encode_then_decode_returns_the_input_to_ode_tolerance(any_sde):
    """The two solves each leave a global error of a few tens of tol, more where a sample sits
    between two modes, where the flow separates them and amplifies the solver's local error
    (measured: 1.5-2.3e-4 at 1e-5 on VP, sub-VP and VE, 1.5e-3 on EDM, whose worst sample is
    such a point; 2-3e-8 at 1e-9 on all five SDEs), so the round trip is within 300·tol at 1e-5
    and 100·tol at 1e-9, and shrinks with tol about as fast as tol does."""
    coarse, fine = round_trip_error(any_sde, 1e-5), round_trip_error(any_sde, 1e-9)
    assert coarse < 300 * 1e-5 and fine < 100 * 1e-9 and fine < coarse / 1e3


def test_latents_of_exact_samples_follow_the_exact_marginal_at_T(any_sde):
    """The flow carries p_eps onto p_T exactly (near the prior: N(0, I) for VP and sub-VP, and
    N(0, σ_max²I) blurred by the data's spread for VE)."""
    x = exact_samples(MIXTURE_2D, any_sde, EPS, NUM_SAMPLES, torch.Generator().manual_seed(1))
    z = samplers.encode(MIXTURE_2D.score_fn(any_sde), any_sde, x, eps=EPS).z
    assert_matches_exact(z, MIXTURE_2D, any_sde, any_sde.T)


def test_decode_of_prior_samples_is_the_ode_sampler():
    sde = SDE_FACTORIES["vp"]()
    generator = torch.Generator().manual_seed(2)
    z = sde.prior_sampling((8, 2), generator=generator, dtype=f64)
    decoded = samplers.decode(MIXTURE_2D.score_fn(sde), sde, z, denoise=True)
    sampled = samplers.sample(MIXTURE_2D.score_fn(sde), sde, (8, 2), "ode", dtype=f64,
                              generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(decoded.x, sampled.x, rtol=1e-12, atol=1e-12)
    assert decoded.nfe == sampled.nfe


def test_images_keep_shape_and_dtype():
    sde = SDE_FACTORIES["ve"]()

    def standard_normal_score(x, t):                 # data N(0, I): p_t = N(0, (a² + σ²)I)
        mean_coeff, std = sde.marginal_coeffs(t.double())
        return -x / (mean_coeff ** 2 + std ** 2).to(x)[:, None, None, None]

    x = torch.randn(2, 1, 2, 2)
    result = samplers.encode(standard_normal_score, sde, x, rtol=1e-3, atol=1e-3)
    assert result.z.shape == x.shape and result.z.dtype == torch.float32
    assert torch.isfinite(result.z).all()


@pytest.mark.parametrize("options,match", [(dict(eps=0.0), "eps"), (dict(rtol=-1), "rtol"),
                                           (dict(ode_method="Euler"), "ode_method")])
def test_encode_and_decode_reject_bad_options(options, match):
    sde, x = SDE_FACTORIES["vp"](), torch.zeros(2, 2)
    for fn in (samplers.encode, samplers.decode):
        with pytest.raises(ValueError, match=match):
            fn(MIXTURE_2D.score_fn(sde), sde, x, **options)
    with pytest.raises(ValueError, match="x"):
        samplers.encode(MIXTURE_2D.score_fn(sde), sde, torch.zeros(2))


# --- slerp ---------------------------------------------------------------------------------------

def test_slerp_ends_angles_and_shapes():
    generator = torch.Generator().manual_seed(3)
    z0, z1 = torch.randn(2, 3, 4, 4, generator=generator, dtype=f64)
    z1 = z1 * z0.norm() / z1.norm()       # equal norms: the path is an arc of one circle
    alpha = torch.linspace(0, 1, 5, dtype=f64)
    path = samplers.slerp(z0, z1, alpha)
    assert path.shape == (5, 3, 4, 4) and path.dtype == f64
    torch.testing.assert_close(path[0], z0)
    torch.testing.assert_close(path[-1], z1)
    u, v = z0.flatten(), z1.flatten()
    theta = torch.arccos(u @ v / (u.norm() * v.norm()))
    for a, z in zip(alpha, path):
        w = z.flatten()
        # The angle to z0 grows linearly along the great circle.
        angle = torch.arccos((w @ u / (w.norm() * u.norm())).clamp(-1, 1))
        torch.testing.assert_close(angle, a * theta)
    assert samplers.slerp(z0, z1, 0.5).shape == z0.shape


def test_slerp_keeps_the_norm_of_equal_norm_latents():
    z0 = torch.tensor([3.0, 0.0], dtype=f64)
    z1 = torch.tensor([0.0, -3.0], dtype=f64)
    path = samplers.slerp(z0, z1, torch.linspace(0, 1, 7, dtype=f64))
    torch.testing.assert_close(path.norm(dim=1), torch.full((7,), 3.0, dtype=f64))
    torch.testing.assert_close(path[3], 3 * torch.tensor([1.0, -1.0], dtype=f64) / math.sqrt(2))


def test_slerp_of_parallel_latents_is_linear_and_opposite_ones_are_rejected():
    z0 = torch.tensor([1.0, 2.0, 2.0], dtype=f64)
    torch.testing.assert_close(samplers.slerp(z0, 3 * z0, 0.25), 1.5 * z0)
    assert torch.equal(samplers.slerp(z0, z0, torch.tensor([0.0, 0.3, 1.0])), z0.expand(3, 3))
    with pytest.raises(ValueError, match="opposite"):
        samplers.slerp(z0, -2 * z0, 0.5)
    with pytest.raises(ValueError, match="non-zero"):
        samplers.slerp(z0, torch.zeros(3, dtype=f64), 0.5)
    with pytest.raises(ValueError, match="shape"):
        samplers.slerp(z0, torch.ones(4, dtype=f64), 0.5)
