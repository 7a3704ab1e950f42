"""Inpainting and colorization against the exact conditional laws of Gaussian mixtures.

The replacement method (samplers/conditional.py) is exact when p_0 factorizes between known and
unknown coordinates, so those cases must pass the null-calibrated two-sample test. When they are
coupled it is biased; `measure_bias` quantifies that (run this file as a script for the table)
and `test_replacement_bias_on_coupled_mixture_is_as_measured` pins the measured value.
"""
import math

import pytest
import torch

import samplers
from models.analytic import GaussianMixture
from samplers.conditioning.tasks import COLOR_DECOUPLE, decouple, recouple
from tests.conftest import SDE_FACTORIES
from two_sample import EPS, MIXTURE_2D, NUM_SAMPLES, assert_matches_exact, energy_test

f64 = torch.float64


def product(first: GaussianMixture, second: GaussianMixture) -> GaussianMixture:
    """The law of (a, b), a ~ first and b ~ second independent: K1·K2 components."""
    weights = (first.weights[:, None] * second.weights[None, :]).flatten()
    pairs = [(i, j) for i in range(len(first.weights)) for j in range(len(second.weights))]
    means = torch.stack([torch.cat([first.means[i], second.means[j]]) for i, j in pairs])
    variances = torch.stack([torch.cat([first.variances[i], second.variances[j]])
                             for i, j in pairs])
    return GaussianMixture(weights, means, variances)


KNOWN_1D = GaussianMixture([0.4, 0.6], [[-1.0], [1.5]], [0.1, 0.2])
FACTORIZED = product(KNOWN_1D, MIXTURE_2D)          # x = (known, unknown₁, unknown₂)
FIRST_KNOWN = torch.tensor([1.0, 0.0, 0.0])


def inpaint_factorized(sde, seed=0, **options):
    """NUM_SAMPLES inpaintings of FACTORIZED's last two coordinates, given data's first one."""
    x_known = FACTORIZED.sample(NUM_SAMPLES, torch.Generator().manual_seed(100 + seed))
    result = samplers.inpaint(FACTORIZED.score_fn(sde), sde, x_known, FIRST_KNOWN,
                              generator=torch.Generator().manual_seed(seed), denoise=False,
                              **options)
    assert torch.equal(result.x[:, 0], x_known[:, 0])        # known entries exactly
    return result.x[:, 1:]


# --- exact ground truth ------------------------------------------------------------------------

def test_conditional_of_factorized_mixture_is_the_unknown_marginal():
    for c in (-2.0, 0.3, 1.5):
        cond = FACTORIZED.conditional(FIRST_KNOWN, [c, 0.0, 0.0])
        u = MIXTURE_2D.sample(50, torch.Generator().manual_seed(0))
        torch.testing.assert_close(cond.log_prob(u), MIXTURE_2D.log_prob(u), rtol=0, atol=1e-12)


def test_conditional_is_the_normalised_joint():
    """log p(u | c) − log p(c, u) is constant in u (= −log p(c)), and cond integrates to 1."""
    cond = MIXTURE_2D.conditional([1, 0], [1.1, 0.0])
    u = torch.linspace(-4, 5, 2001, dtype=f64)[:, None]
    joint = MIXTURE_2D.log_prob(torch.cat([torch.full_like(u, 1.1), u], 1))
    difference = cond.log_prob(u) - joint
    assert (difference - difference[0]).abs().max() < 1e-10
    assert abs(torch.trapezoid(cond.log_prob(u).exp(), u[:, 0]).item() - 1) < 1e-6


def test_sample_conditional_keeps_known_entries_and_draws_the_conditional():
    x_known = torch.tensor([[1.1, 9.0]], dtype=f64).expand(NUM_SAMPLES, 2)
    draws = MIXTURE_2D.sample_conditional([1, 0], x_known, torch.Generator().manual_seed(0))
    assert torch.equal(draws[:, 0], x_known[:, 0])
    cond = MIXTURE_2D.conditional([1, 0], [1.1, 0.0])
    exact = cond.sample(NUM_SAMPLES, torch.Generator().manual_seed(1))
    assert energy_test(draws[:, 1:], exact)[1] > 1e-3


# --- inpainting: exact cases -------------------------------------------------------------------

def test_inpainting_matches_exact_conditional_when_the_mixture_factorizes(any_sde):
    """Exact by the math: the score of the unknown coordinates does not depend on the known."""
    u = inpaint_factorized(any_sde, predictor="reverse_diffusion", corrector="none")
    assert_matches_exact(u, MIXTURE_2D, any_sde, EPS)


@pytest.mark.parametrize("sde_name", ["vp", pytest.param("ve", marks=pytest.mark.slow)])
def test_inpainting_with_langevin_corrector_matches_when_the_mixture_factorizes(sde_name):
    sde = SDE_FACTORIES[sde_name]()
    assert_matches_exact(inpaint_factorized(sde, seed=1), MIXTURE_2D, sde, EPS)


@pytest.mark.slow
@pytest.mark.parametrize("predictor,corrector", [("euler_maruyama", "none"),
                                                 ("ancestral", "none"), ("none", "ald")])
def test_inpainting_other_predictors_and_correctors_when_the_mixture_factorizes(predictor,
                                                                                corrector):
    sde = SDE_FACTORIES["vp"]()
    options = dict(n_steps=5) if corrector == "ald" else {}
    u = inpaint_factorized(sde, seed=2, predictor=predictor, corrector=corrector, **options)
    assert_matches_exact(u, MIXTURE_2D, sde, EPS)


# --- inpainting: the replacement's bias on coupled coordinates ----------------------------------

def measure_bias(sde, c: float, n: int, seed: int = 0, **options):
    """(fraction of inpainted u = x₂ < 0.25, its exact value) given x₁ = c, for MIXTURE_2D.

    MIXTURE_2D's modes are (2, 2) and (−1, −1.5): c = 2 selects the upper one (weight 1 − 3e-7),
    so the exact fraction is the upper mode's tail below 0.25 at EPS, about 7e-4.
    """
    x_known = torch.tensor([[c, 0.0]], dtype=f64).expand(n, 2)
    result = samplers.inpaint(MIXTURE_2D.score_fn(sde), sde, x_known, torch.tensor([1.0, 0.0]),
                              generator=torch.Generator().manual_seed(seed), denoise=False,
                              **options)
    cond = MIXTURE_2D.conditional([1, 0], [c, 0.0])
    mean_coeff, std = sde.marginal_coeffs(torch.tensor([EPS], dtype=f64))
    spread = (mean_coeff ** 2 * cond.variances[:, 0] + std ** 2).sqrt()
    normal = torch.distributions.Normal(mean_coeff * cond.means[:, 0], spread)
    exact = (cond.weights * normal.cdf(torch.tensor(0.25, dtype=f64))).sum().item()
    return (result.x[:, 1] < 0.25).double().mean().item(), exact


def test_replacement_bias_on_coupled_mixture_is_as_measured():
    """A documented measurement, not an accuracy test: the replacement ignores that the known
    coordinate's noise at t is tied to x_u's path, so x₁ = 2 selects the upper mode too late.

    Measured (`python tests/test_conditional.py`: n = 2000, seed 0, 1000 steps, reverse
    diffusion, no corrector): 0.174 ± 0.008 of the samples land in the wrong mode for VP and
    sub-VP, 0.183 for VE, against 7e-4 exact; 0.17 with 4000 steps (not a discretisation
    error); 0.35 along the probability flow; 0.001 with the Langevin corrector, which is no
    cure either: where both modes have conditional weight ½ (x₁ = 1.1283) it puts 0.33-0.36
    below 0.25 instead of 0.50. Here n = 500 (SE 0.017): the value must lie within five
    combined standard errors of the measurement.
    """
    fraction, exact = measure_bias(SDE_FACTORIES["vp"](), 2.0, NUM_SAMPLES,
                                   predictor="reverse_diffusion", corrector="none")
    assert exact < 1e-3
    assert abs(fraction - 0.174) < 5 * math.hypot(0.017, 0.008), fraction


# --- inpainting: contract ------------------------------------------------------------------------

def unit_score(x, t):
    return -x


@pytest.mark.parametrize("mask_shape", [(1, 3, 4, 4), (3, 4, 4), (4,), (2, 1, 1, 1)])
def test_images_keep_known_pixels_with_broadcast_masks(mask_shape):
    x_known = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    mask = torch.rand(mask_shape, generator=torch.Generator().manual_seed(1)) < 0.5
    result = samplers.inpaint(unit_score, SDE_FACTORIES["ve"](), x_known, mask, num_steps=5,
                              generator=torch.Generator().manual_seed(2))
    full = mask.expand(x_known.shape)
    assert result.x.shape == x_known.shape and result.x.dtype == torch.float32
    assert torch.equal(result.x[full], x_known[full]) and torch.isfinite(result.x).all()


def test_nfe_is_that_of_pc_and_all_known_returns_x_known():
    sde, x_known = SDE_FACTORIES["vp"](), torch.randn(3, 2, dtype=f64)
    options = dict(num_steps=7, n_steps=2)
    result = samplers.inpaint(unit_score, sde, x_known, torch.tensor([1.0, 0.0]), **options)
    assert result.nfe == samplers.sample(unit_score, sde, (3, 2), "pc", **options).nfe == 7 * 3 + 1
    assert torch.equal(samplers.inpaint(unit_score, sde, x_known, torch.ones(2)).x, x_known)


def test_per_sample_generators_make_rows_batch_independent():
    sde, x_known = SDE_FACTORIES["vp"](), torch.randn(4, 3, dtype=f64)

    def run(rows):
        generators = [torch.Generator().manual_seed(10 + i) for i in rows]
        return samplers.inpaint(unit_score, sde, x_known[rows], FIRST_KNOWN, num_steps=6,
                                corrector="ald", generator=generators).x

    assert torch.equal(run([0, 1, 2, 3])[2:], run([2, 3]))


@pytest.mark.parametrize("x_known,mask,match", [
    (torch.zeros(2, 3), torch.ones(4), "mask"),
    (torch.zeros(2, 3), torch.tensor([1.0, 0.5, 0.0]), "mask"),
    (torch.zeros(2, 3), torch.ones(3, 2, 3), "mask"),
    (torch.zeros(3), torch.ones(3), "x_known"),
    (torch.zeros(2, 3, dtype=torch.long), torch.ones(3), "x_known"),
])
def test_inpaint_rejects_bad_masks(x_known, mask, match):
    with pytest.raises(ValueError, match=match):
        samplers.inpaint(unit_score, SDE_FACTORIES["vp"](), x_known, mask)


def test_inpaint_rejects_bad_options_before_work():
    calls = []
    sde, x_known = SDE_FACTORIES["vp"](), torch.zeros(2, 3)
    for options, match in [(dict(predictor="nope"), "predictor"), (dict(snr=0), "snr"),
                           (dict(eps=2.0), "eps"), (dict(num_steps=0), "num_steps")]:
        with pytest.raises(ValueError, match=match):
            samplers.inpaint(lambda x, t: calls.append(1), sde, x_known, FIRST_KNOWN, **options)
    assert not calls


# --- colorization ------------------------------------------------------------------------------

def test_decoupling_matrix_is_orthogonal_with_the_gray_axis_first():
    torch.testing.assert_close(COLOR_DECOUPLE @ COLOR_DECOUPLE.T, torch.eye(3, dtype=f64))
    torch.testing.assert_close(COLOR_DECOUPLE[0], torch.full((3,), 3 ** -0.5, dtype=f64))
    x = torch.randn(2, 3, 2, 2, dtype=f64)
    torch.testing.assert_close(recouple(decouple(x)), x)
    torch.testing.assert_close(decouple(x)[:, 0], 3 ** 0.5 * x.mean(1))


IMAGE = (3, 1, 2)  # [C, H, W]: two colour pixels


def colour_mixture():
    """Images whose decoupled (gray, chroma) coordinates are independent mixtures, all with the
    isotropic variance 0.1: (y mixture, the same mixture as colours x = Mᵀy, the chroma part)."""
    gray = GaussianMixture([0.5, 0.5], [[1.0, -0.5], [-1.0, 0.8]], [0.1, 0.1])
    chroma = GaussianMixture([0.3, 0.7], [[0.8, -0.6, 0.2, 0.5], [-0.5, 0.4, -0.7, 0.1]],
                             [0.1, 0.1])
    # Flattened [3, 1, 2] layout: channel-major, so gray coordinates first, then the chroma ones.
    decoupled = product(gray, chroma)
    means = recouple(decoupled.means.view(-1, *IMAGE)).flatten(1)
    return decoupled, GaussianMixture(decoupled.weights, means, decoupled.variances), chroma


@pytest.mark.parametrize("sde_name", ["vp", "ve", pytest.param("subvp", marks=pytest.mark.slow),
                                      pytest.param("vp_cosine", marks=pytest.mark.slow)])
def test_colorization_matches_exact_conditional(sde_name):
    """Isotropic components stay diagonal in decoupled coordinates, where gray and chroma
    factorize: replacement is exact, and the chroma given the gray is `chroma` itself."""
    sde = SDE_FACTORIES[sde_name]()
    decoupled, colours, chroma = colour_mixture()
    data = colours.sample(NUM_SAMPLES, torch.Generator().manual_seed(3)).view(-1, *IMAGE)
    gray = data.mean(1, keepdim=True)
    result = samplers.colorize(colours.score_fn(sde), sde, gray, corrector="none",
                               denoise=False, generator=torch.Generator().manual_seed(4))
    assert result.x.shape == data.shape
    torch.testing.assert_close(result.x.mean(1, keepdim=True), gray, rtol=0, atol=1e-12)
    known = decouple(data)[0].flatten() * torch.tensor([1.0, 1, 0, 0, 0, 0], dtype=f64)
    exact = decoupled.conditional([1, 1, 0, 0, 0, 0], known)
    u = chroma.sample(20, torch.Generator().manual_seed(5))
    torch.testing.assert_close(exact.log_prob(u), chroma.log_prob(u), rtol=0, atol=1e-12)
    assert_matches_exact(decouple(result.x)[:, 1:].flatten(1), chroma, sde, EPS)


@pytest.mark.parametrize("gray", [torch.zeros(2, 3, 4, 4), torch.zeros(4), "gray"])
def test_colorize_rejects_bad_gray(gray):
    with pytest.raises(ValueError, match="gray"):
        samplers.colorize(unit_score, SDE_FACTORIES["vp"](), gray)


if __name__ == "__main__":
    # The bias table of the module docstring: PYTHONPATH=.:tests python tests/test_conditional.py
    torch.set_num_threads(1)
    configurations = {"no corrector": dict(corrector="none"), "langevin": {},
                      "4000 steps": dict(corrector="none", num_steps=4000),
                      "probability flow": dict(corrector="none", probability_flow=True)}
    # c = 2 selects the upper mode; at c = 1.1283 both modes have conditional weight 1/2.
    for c in (2.0, 1.1283):
        for name in ("vp", "subvp", "ve"):
            for label, options in configurations.items():
                fraction, exact = measure_bias(SDE_FACTORIES[name](), c, 2000, **options)
                error = (fraction * (1 - fraction) / 2000) ** 0.5
                print(f"c = {c}: {name:6s} {label:17s} P(x2 < 0.25) {fraction:.3f} ± {error:.3f} "
                      f"(exact {exact:.4f})", flush=True)
