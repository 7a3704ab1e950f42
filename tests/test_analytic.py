"""models.analytic.GaussianMixture: exact score and log-density of p_t under every SDE."""
import math

import numpy as np
import pytest
import torch
from scipy import integrate

from models.analytic import GaussianMixture

f64 = torch.float64


def _mixture_2d():
    return GaussianMixture([0.3, 0.7], [[1.0, -1.0], [-2.0, 0.5]], [[0.1, 0.2], [0.5, 0.05]])


@pytest.mark.parametrize("shape", [(6, 2), (6, 2, 1, 1)])
def test_score_is_gradient_of_log_prob(any_sde, shape):
    gm = _mixture_2d()
    gen = torch.Generator().manual_seed(0)
    t = torch.rand(shape[0], generator=gen, dtype=f64)
    x = (gm.sample(shape[0], gen) * 1.5).reshape(shape).requires_grad_(True)
    grad, = torch.autograd.grad(gm.log_prob(x, t, any_sde).sum(), x)
    score = gm.score_fn(any_sde)(x.detach(), t)
    assert score.shape == shape
    torch.testing.assert_close(score, grad, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("t", [0.0, 0.3, 1.0])
def test_log_prob_integrates_to_one_in_1d(any_sde, t):
    gm = GaussianMixture([0.25, 0.75], [[-1.0], [0.8]], [0.04, 0.3])
    sigma_t = any_sde.marginal_coeffs(torch.tensor([t], dtype=f64))[1].item()
    width = 10 * (2 + sigma_t)

    def density(x):
        return math.exp(gm.log_prob(torch.tensor([[x]], dtype=f64), t, any_sde).item())

    total, err = integrate.quad(density, -width, width, points=[-1.0, 0.8], limit=200)
    assert total == pytest.approx(1.0, abs=1e-7)


def test_log_prob_is_the_convolution_of_data_and_kernel(any_sde):
    """p_t(x) = ∫ p_0(x0) N(x; a·x0, σ²) dx0, computed by quadrature for a 1-D mixture."""
    gm = GaussianMixture([0.5, 0.5], [[-1.0], [1.0]], [0.1, 0.2])
    t = torch.tensor([0.4], dtype=f64)
    mean_coeff, std = (v.item() for v in any_sde.marginal_coeffs(t))
    for x in (-1.5, 0.0, 2.0):
        def integrand(x0):
            p0 = math.exp(gm.log_prob(torch.tensor([[x0]], dtype=f64)).item())
            return p0 * math.exp(-0.5 * ((x - mean_coeff * x0) / std) ** 2) / (std * math.sqrt(2 * math.pi))
        expected, _ = integrate.quad(integrand, -8, 8, points=[-1.0, 1.0], limit=200)
        got = math.exp(gm.log_prob(torch.tensor([[x]], dtype=f64), t, any_sde).item())
        assert got == pytest.approx(expected, rel=1e-7)


def test_sample_moments():
    """Sample mean/variance within 5 standard errors of the mixture's own moments."""
    gm = _mixture_2d()
    n = 200_000
    x = gm.sample(n, torch.Generator().manual_seed(3))
    var = gm.variance()
    assert ((x.mean(0) - gm.mean()).abs() < 5 * (var / n).sqrt()).all()
    fourth = ((x - gm.mean()) ** 4).mean(0)
    assert ((x.var(0) - var).abs() < 5 * ((fourth - var ** 2) / n).sqrt()).all()


def test_isotropic_variances_and_images():
    gm = GaussianMixture([1.0], [[0.0] * 12], [2.0])
    x = torch.randn(3, 3, 2, 2, dtype=f64)
    expected = torch.distributions.Normal(0.0, math.sqrt(2.0)).log_prob(x).flatten(1).sum(1)
    torch.testing.assert_close(gm.log_prob(x), expected)


@pytest.mark.parametrize("kwargs, message", [
    (dict(weights=[0.5, 0.6], means=[[0.0], [1.0]], variances=[1.0, 1.0]), "sum to 1"),
    (dict(weights=[1.0], means=[[0.0]], variances=[0.0]), "variances"),
    (dict(weights=[1.0], means=[0.0], variances=[1.0]), "means"),
    (dict(weights=[1.0], means=[[0.0, 1.0]], variances=[[1.0]]), "variances"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GaussianMixture(**kwargs)


def test_wrong_dimension_is_reported():
    with pytest.raises(ValueError, match="dims"):
        _mixture_2d().log_prob(torch.zeros(2, 3))


def test_float32_and_numpy_inputs():
    gm = GaussianMixture(np.array([1.0]), np.zeros((1, 2)), np.ones(1))
    x = torch.zeros(4, 2)
    assert gm.log_prob(x).dtype == torch.float32
    assert gm.score(x, 0.5, None).dtype == torch.float32


def test_denoiser_is_tweedie_of_the_exact_score(any_sde):
    """E[x_0 | x̂ = x_0 + σn] from the components' Gaussian posteriors equals Tweedie's formula
    (x + std²·∇log p_t(x))/a at the time where std/a = σ, with x = a·x̂ (two closed forms)."""
    gm = _mixture_2d()
    gen = torch.Generator().manual_seed(3)
    t = 0.01 + (any_sde.T - 0.01) * torch.rand(8, generator=gen, dtype=f64)
    mean_coeff, std = any_sde.marginal_coeffs(t)
    x = 2 * torch.randn(8, 2, generator=gen, dtype=f64)
    tweedie = (x + std[:, None] ** 2 * gm.score(x, t, any_sde)) / mean_coeff[:, None]
    denoised = gm.denoiser((x / mean_coeff[:, None]).reshape(8, 2, 1, 1), std / mean_coeff)
    assert denoised.shape == (8, 2, 1, 1)
    torch.testing.assert_close(denoised.reshape(8, 2), tweedie, rtol=1e-9, atol=1e-9)


def test_denoiser_limits():
    """σ → 0: the identity; σ → ∞: the mixture's mean."""
    gm = _mixture_2d()
    x = torch.tensor([[0.3, -0.2], [1.5, 2.0]], dtype=f64)
    torch.testing.assert_close(gm.denoiser(x, 1e-6), x, rtol=0, atol=1e-10)
    torch.testing.assert_close(gm.denoiser(x, 1e6), gm.mean().expand(2, 2), rtol=0, atol=1e-5)


# --- linear observations: the exact posterior and the diffused mixture --------------------------

def _mixture_4d():
    generator = torch.Generator().manual_seed(11)
    return GaussianMixture([0.2, 0.5, 0.3], 1.5 * torch.randn(3, 4, generator=generator, dtype=f64),
                           0.1 + torch.rand(3, 4, generator=generator, dtype=f64))


def test_posterior_of_a_selection_is_the_conditional():
    gm, c = _mixture_4d(), torch.tensor([0.3, 0.0, -1.2, 0.0], dtype=f64)
    mask = torch.tensor([1.0, 0.0, 1.0, 0.0])
    post = gm.posterior(torch.eye(4, dtype=f64)[[0, 2]], c[[0, 2]])
    cond = gm.conditional(mask, c)
    torch.testing.assert_close(post.weights, cond.weights)
    torch.testing.assert_close(post.means[:, [1, 3]], cond.means)
    torch.testing.assert_close(post.means[:, [0, 2]], c[[0, 2]].expand(3, 2))
    torch.testing.assert_close(post.covariances[:, [1, 3]][:, :, [1, 3]],
                               torch.diag_embed(cond.variances))
    assert post.covariances[:, [0, 2]].abs().max() < 1e-12       # the known part is fixed


def test_noisy_posterior_is_the_normalized_joint():
    """log p(x | y) − log p(x) − log N(y; A·x, σ²I) = −log p(y) for every x, and in 1-D p(y) is
    the quadrature of the joint."""
    gm, generator = _mixture_4d(), torch.Generator().manual_seed(1)
    matrix, y = torch.randn(2, 4, generator=generator, dtype=f64), torch.tensor([0.5, -0.3])
    post = gm.posterior(matrix, y, noise_std=0.6)
    x = post.sample(7, generator)
    likelihood = torch.distributions.Normal(x @ matrix.T, 0.6).log_prob(y.to(f64)).sum(1)
    difference = post.log_prob(x) - gm.log_prob(x) - likelihood
    assert (difference - difference[0]).abs().max() < 1e-10
    one_d = GaussianMixture([0.4, 0.6], [[-1.0], [2.0]], [0.3, 0.5])
    post = one_d.posterior([[2.0]], [1.0], noise_std=0.7)
    u = torch.tensor([[0.1]], dtype=f64)

    def joint(v):
        prior = one_d.log_prob(torch.tensor([[v]], dtype=f64)).item()
        return math.exp(prior + torch.distributions.Normal(2 * v, 0.7).log_prob(
            torch.tensor(1.0)).item())

    evidence, _ = integrate.quad(joint, -12, 12, points=[-1.0, 0.5, 2.0], limit=200)
    expected = math.log(joint(0.1) / evidence)
    assert post.log_prob(u).item() == pytest.approx(expected, abs=1e-7)


def test_noiseless_posterior_lives_on_the_observed_affine_set():
    gm, generator = _mixture_4d(), torch.Generator().manual_seed(2)
    matrix = torch.randn(2, 4, generator=generator, dtype=f64)
    y = torch.tensor([1.0, -0.5], dtype=f64)
    post = gm.posterior(matrix, y)
    x = post.sample(50, generator)
    torch.testing.assert_close(x @ matrix.T, y.expand(50, 2))
    with pytest.raises(ValueError, match="singular"):
        post.log_prob(x)
    null_basis = torch.linalg.svd(matrix, full_matrices=True)[2][2:]       # [2, 4]
    assert torch.isfinite(post.linear_map(null_basis).log_prob(x @ null_basis.T)).all()


def test_full_mixture_log_prob_and_sample_moments():
    gm, generator = _mixture_4d(), torch.Generator().manual_seed(3)
    post = gm.posterior(torch.ones(1, 4, dtype=f64), [0.7], noise_std=0.5)
    x = torch.randn(5, 4, generator=generator, dtype=f64)
    components = torch.distributions.MultivariateNormal(post.means, post.covariances)
    expected = torch.logsumexp(torch.log(post.weights) + components.log_prob(x[:, None]), dim=1)
    torch.testing.assert_close(post.log_prob(x), expected)
    n = 100_000
    draws = post.sample(n, generator)
    spread = draws.std(0)
    assert ((draws.mean(0) - post.mean()).abs() < 5 * spread / math.sqrt(n)).all()


def test_diffused_mixture_is_p_t(any_sde):
    gm, x = _mixture_2d(), torch.randn(6, 2, dtype=f64)
    for t in (0.0, 0.3, 1.0):
        torch.testing.assert_close(gm.diffused(t, any_sde).log_prob(x), gm.log_prob(x, t, any_sde))


@pytest.mark.parametrize("matrix,y,noise_std,message", [
    ([[1.0, 0.0, 0.0]], [0.0], 0.0, "matrix"), ([[1.0, 0.0]], [0.0, 1.0], 0.0, "y"),
    ([[1.0, 0.0], [2.0, 0.0]], [0.0, 1.0], 0.0, "full row rank"),
    ([[1.0, 0.0]], [0.0], -0.1, "noise_std"),
])
def test_posterior_rejects_bad_observations(matrix, y, noise_std, message):
    with pytest.raises(ValueError, match=message):
        _mixture_2d().posterior(matrix, y, noise_std)
