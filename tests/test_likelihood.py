"""log_likelihood against the mixtures' exact log-densities; Hutchinson estimators are unbiased.

With the exact score the flow carries p_eps onto the true p_T, not the prior, so the value to
compare with is log p_eps(x) − log p_T(z) + prior_logp(z), z being where the flow ends.
"""
import pytest
import torch

import samplers
from samplers.likelihood.probability_flow import trace_estimate
from tests.conftest import SDE_FACTORIES
from two_sample import MIXTURE_2D, MIXTURE_16D, MIXTURES

f64 = torch.float64
EPS = 1e-5


def flow_target(mixture, sde, x, z):
    return mixture.log_prob(x, EPS, sde) - mixture.log_prob(z, sde.T, sde) + sde.prior_logp(z)


@pytest.mark.parametrize("dim", [2, 16])
def test_exact_divergence_is_accurate_to_1e_3_nats_per_dim(any_sde, dim):
    mixture = MIXTURES[dim]
    x = mixture.sample(8, torch.Generator().manual_seed(0))
    result = samplers.log_likelihood(mixture.score_fn(any_sde), any_sde, x, divergence="exact")
    error = (result.logp - flow_target(mixture, any_sde, x, result.z)).abs().mean() / dim
    assert error <= 1e-3
    assert result.logp.shape == (8,) and result.logp.dtype == f64 and result.z.shape == x.shape


@pytest.mark.parametrize("divergence", ["rademacher", "gaussian"])
def test_hutchinson_estimates_are_unbiased(divergence):
    """Means over 256 probes per point lie within 3 standard errors of the exact-trace value.

    Tight tolerances keep the solver's own error (~1e-6 nats) far below the standard errors, and
    points between modes give the Jacobian off-diagonal terms, hence Rademacher variance.
    """
    sde, mixture, probes = SDE_FACTORIES["vp"](), MIXTURE_16D, 256
    points = torch.stack([0.5 * (mixture.means[0] + mixture.means[1]), mixture.mean()])
    x = points.repeat_interleave(probes, dim=0)                                # [2·256, 16]
    options = dict(rtol=1e-7, atol=1e-7)
    estimate = samplers.log_likelihood(mixture.score_fn(sde), sde, x, divergence=divergence,
                                       generator=torch.Generator().manual_seed(1), **options)
    exact = samplers.log_likelihood(mixture.score_fn(sde), sde, points, divergence="exact",
                                    **options)
    samples = estimate.logp.view(2, probes)
    mean, standard_error = samples.mean(1), samples.std(1) / probes ** 0.5
    assert (standard_error > 1e-3).all()
    assert ((mean - exact.logp).abs() <= 3 * standard_error).all()


def test_trace_estimate_of_a_linear_map():
    """s = A·w: the basis probes give tr A exactly; P probes at once equal P single-probe calls."""
    generator = torch.Generator().manual_seed(0)
    A = torch.randn(5, 5, generator=generator, dtype=f64)
    w = torch.randn(3, 5, generator=generator, dtype=f64, requires_grad=True)
    basis = torch.eye(5, dtype=f64)[:, None, :].expand(5, 3, 5)
    torch.testing.assert_close(trace_estimate(w @ A.T, w, basis, exact=True),
                               torch.trace(A).expand(3))
    probes = torch.randn(4, 3, 5, generator=generator, dtype=f64)
    batched = trace_estimate(w @ A.T, w, probes, exact=False)
    single = torch.stack([trace_estimate(w @ A.T, w, p[None], exact=False) for p in probes]).mean(0)
    torch.testing.assert_close(batched, single)
    torch.testing.assert_close(batched, torch.einsum("pbi,ij,pbj->b", probes, A, probes) / 4)


def test_image_shapes_and_nfe():
    sde, calls = SDE_FACTORIES["ve"](), []

    def score_fn(x, t):
        calls.append(1)
        return MIXTURE_16D.score(x, t, sde)

    x = MIXTURE_16D.sample(3, torch.Generator().manual_seed(2))
    flat = samplers.log_likelihood(score_fn, sde, x, divergence="exact")
    assert flat.nfe == len(calls)
    image = samplers.log_likelihood(MIXTURE_16D.score_fn(sde), sde, x.view(3, 1, 4, 4),
                                    divergence="exact")
    assert image.z.shape == (3, 1, 4, 4)
    torch.testing.assert_close(image.logp, flat.logp)


def test_float32_data():
    """Scores evaluated in float32, state and integral in float64: float32-level agreement."""
    sde = SDE_FACTORIES["subvp"]()
    x = MIXTURE_2D.sample(4, torch.Generator().manual_seed(3))
    single = samplers.log_likelihood(MIXTURE_2D.score_fn(sde), sde, x.float(), divergence="exact")
    double = samplers.log_likelihood(MIXTURE_2D.score_fn(sde), sde, x, divergence="exact")
    assert single.z.dtype == torch.float32 and single.logp.dtype == f64
    torch.testing.assert_close(single.logp, double.logp, rtol=0, atol=1e-4)


@pytest.mark.parametrize("options, field", [
    (dict(divergence="hutchinson"), "divergence"), (dict(eps=0.0), "eps"),
    (dict(ode_method="euler"), "ode_method"), (dict(num_probes=0), "num_probes"),
    (dict(rtol=-1.0), "rtol"),
])
def test_bad_options(options, field):
    with pytest.raises(ValueError, match=field):
        samplers.log_likelihood(lambda x, t: -x, SDE_FACTORIES["vp"](), torch.zeros(2, 2),
                                **options)


def test_the_likelihood_of_a_diverging_score_is_an_error_not_a_number():
    import pytest
    from samplers.flow import FlowDiverged
    sde = SDE_FACTORIES["vp"]()
    with pytest.raises(FlowDiverged, match="likelihood ODE: the state or its derivative"):
        samplers.log_likelihood(lambda x, t: x * float("inf"), sde, torch.ones(2, 2))
    with pytest.raises(FlowDiverged, match="more than max_nfe=30"):
        samplers.log_likelihood(lambda x, t: -x * 1e12 * (1 + torch.sin(1e6 * t)[:, None]), sde,
                                torch.ones(2, 2), max_nfe=30)
