"""Classifier-free and classifier guidance with an exact class-conditional mixture.

Each class is one component of MIXTURE_2D, so p_t(x | y) and p_t(y | x) are exact: scale 0 must
reproduce unconditional sampling bit for bit, scale 1 must sample the class's component, and
classifier guidance at scale 1 is the conditional score itself (Bayes).
"""
import pytest
import torch

import samplers
from models.analytic import ClassConditionalMixture
from samplers.common import select_rows
from samplers.conditioning.guidance import ClassifierFreeGuidance
from tests.conftest import SDE_FACTORIES, uniform_grid_steps
from two_sample import EPS, MIXTURE_2D, NUM_SAMPLES, assert_matches_exact

f64 = torch.float64
CLASSES = ClassConditionalMixture(MIXTURE_2D.weights, MIXTURE_2D.means, MIXTURE_2D.variances)
NULL = CLASSES.null_label


def random_points(sde, n=64, seed=0):
    generator = torch.Generator().manual_seed(seed)
    t = EPS + (sde.T - EPS) * torch.rand(n, generator=generator, dtype=f64)
    mean_coeff, std = sde.marginal_coeffs(t)
    x = mean_coeff[:, None] * 3 * torch.randn(n, 2, generator=generator, dtype=f64)
    return x + std[:, None] * torch.randn(n, 2, generator=generator, dtype=f64), t


class Counting:
    """A conditional score recording the batch size of each call."""

    def __init__(self, fn):
        self.fn, self.batches = fn, []

    def __call__(self, x, t, y):
        self.batches.append(x.shape[0])
        return self.fn(x, t, y)


# --- the exact class-conditional mixture ---------------------------------------------------------

def test_exact_class_conditional_scores_and_classifier(any_sde):
    x, t = random_points(any_sde)
    null = torch.full((len(x),), NULL)
    assert torch.equal(CLASSES.cond_score(x, t, any_sde, null), CLASSES.score(x, t, any_sde))
    for k in range(CLASSES.num_classes):
        label = torch.full((len(x),), k)
        torch.testing.assert_close(CLASSES.cond_score(x, t, any_sde, label),
                                   CLASSES.component(k).score(x, t, any_sde))
    log_prob = CLASSES.classifier_log_prob(x, t, any_sde)                   # [B, K]
    torch.testing.assert_close(log_prob.exp().sum(1), torch.ones(len(x), dtype=f64))
    bayes = torch.stack([CLASSES.component(k).log_prob(x, t, any_sde) for k in range(2)], 1)
    bayes = bayes + CLASSES.weights.log() - CLASSES.log_prob(x, t, any_sde)[:, None]
    torch.testing.assert_close(log_prob, bayes)


# --- the guided scores, per point ----------------------------------------------------------------

def test_classifier_free_guidance_formula_and_evaluations():
    sde = SDE_FACTORIES["vp"]()
    x, t = random_points(sde, n=8)
    y = torch.tensor([0, 1, 2, 0, 1, 1, 0, 2])
    cond = CLASSES.cond_score_fn(sde)
    for scale, batches in [(0.0, [8]), (1.0, [8]), (2.5, [16]), (-0.5, [16])]:
        counted = Counting(cond)
        guided = samplers.classifier_free_guidance(counted, y, scale, NULL)(x, t)
        unconditional = cond(x, t, torch.full_like(y, NULL))
        expected = unconditional + scale * (cond(x, t, y) - unconditional)
        torch.testing.assert_close(guided, expected, rtol=1e-12, atol=1e-12)
        assert counted.batches == batches, (scale, counted.batches)


def test_classifier_guidance_at_scale_one_is_the_conditional_score(any_sde):
    x, t = random_points(any_sde)
    y = torch.arange(len(x)) % 2
    guided = samplers.classifier_guidance(CLASSES.score_fn(any_sde),
                                          CLASSES.classifier_log_prob_fn(any_sde), y, 1.0)
    with torch.no_grad():                         # as samplers run it
        value = guided(x, t)
    torch.testing.assert_close(value, CLASSES.cond_score(x, t, any_sde, y), rtol=1e-10,
                               atol=1e-10)


def test_classifier_guidance_at_scale_zero_does_not_call_the_classifier():
    def classifier(x, t):
        raise AssertionError("the classifier was evaluated")
    sde = SDE_FACTORIES["ve"]()
    x, t = random_points(sde)
    guided = samplers.classifier_guidance(CLASSES.score_fn(sde), classifier, 1, 0.0)
    assert torch.equal(guided(x, t), CLASSES.score(x, t, sde))


def test_labels_follow_selected_rows():
    sde = SDE_FACTORIES["vp"]()
    x, t = random_points(sde, n=6)
    y = torch.tensor([0, 1, 2, 1, 0, 2])
    rows = [4, 1, 5]
    for guided in (samplers.classifier_free_guidance(CLASSES.cond_score_fn(sde), y, 3.0, NULL),
                   samplers.classifier_guidance(CLASSES.score_fn(sde),
                                                CLASSES.classifier_log_prob_fn(sde),
                                                y.clamp(max=1), 2.0)):
        torch.testing.assert_close(select_rows(guided, rows)(x[rows], t[rows]),
                                   guided(x, t)[rows], rtol=1e-12, atol=1e-12)
        with pytest.raises(ValueError, match="select_rows"):
            guided(x[:3], t[:3])


@pytest.mark.parametrize("args,match", [
    (dict(y=torch.tensor([0.0, 1.0])), "y"), (dict(y=torch.tensor([0, 3])), "y"),
    (dict(y=-1), "y"), (dict(scale=float("nan")), "scale"), (dict(scale="2"), "scale"),
    (dict(null_label=-1), "null_label"), (dict(null_label=True), "null_label"),
])
def test_classifier_free_guidance_rejects_bad_arguments(args, match):
    arguments = dict(cond_score_fn=CLASSES.cond_score_fn(SDE_FACTORIES["vp"]()),
                     y=torch.tensor([0, 1]), scale=2.0, null_label=NULL)
    with pytest.raises(ValueError, match=match):
        samplers.classifier_free_guidance(**{**arguments, **args})


# --- sampling ------------------------------------------------------------------------------------

@pytest.mark.parametrize("method,options", [("pc", dict(num_steps=20)),
                                            ("ode", dict(rtol=1e-4, atol=1e-4)),
                                            ("adaptive_sde", dict(rtol=0.05))])
def test_scale_zero_is_unconditional_sampling_bit_for_bit(method, options):
    sde = SDE_FACTORIES["vp"]()
    y = torch.arange(16) % 2
    guided = [samplers.classifier_free_guidance(CLASSES.cond_score_fn(sde), y, 0.0, NULL),
              samplers.classifier_guidance(CLASSES.score_fn(sde),
                                           CLASSES.classifier_log_prob_fn(sde), y, 0)]
    results = [samplers.sample(score_fn, sde, (16, 2), method, dtype=f64,
                               generator=torch.Generator().manual_seed(0), **options)
               for score_fn in [CLASSES.score_fn(sde)] + guided]
    for result in results[1:]:
        assert torch.equal(result.x, results[0].x) and result.nfe == results[0].nfe


def sample_class(sde, score_fn):
    return samplers.sample(score_fn, sde, (NUM_SAMPLES, 2), "reverse_diffusion", dtype=f64,
                           denoise=False, generator=torch.Generator().manual_seed(1),
                           num_steps=uniform_grid_steps(sde)).x


@pytest.mark.parametrize("label", [0, pytest.param(1, marks=pytest.mark.slow)])
def test_classifier_free_guidance_at_scale_one_samples_the_class(any_sde, label):
    score_fn = samplers.classifier_free_guidance(CLASSES.cond_score_fn(any_sde),
                                                 torch.full((NUM_SAMPLES,), label), 1.0, NULL)
    assert_matches_exact(sample_class(any_sde, score_fn), CLASSES.component(label), any_sde, EPS)


@pytest.mark.parametrize("sde_name", ["vp", "ve"])
def test_classifier_guidance_at_scale_one_samples_the_class(sde_name):
    sde = SDE_FACTORIES[sde_name]()
    score_fn = samplers.classifier_guidance(CLASSES.score_fn(sde),
                                            CLASSES.classifier_log_prob_fn(sde), 0, 1.0)
    assert_matches_exact(sample_class(sde, score_fn), CLASSES.component(0), sde, EPS)


SMALL = {"pc": dict(num_steps=5), "ancestral": dict(num_steps=5),
         "reverse_diffusion": dict(num_steps=5), "euler_maruyama": dict(num_steps=5),
         "annealed_langevin": dict(num_steps=5, n_steps_each=1), "ode": dict(rtol=1e-3, atol=1e-3),
         "sdeint": dict(num_steps=5), "ddim": dict(num_steps=5), "heun": dict(num_steps=5),
         "dpm_solver": dict(num_steps=5), "adaptive_sde": dict(rtol=0.05)}


@pytest.mark.parametrize("method", sorted(samplers.SAMPLERS))
@pytest.mark.parametrize("guidance", ["free", "classifier"])
def test_every_sampler_runs_with_a_guided_score(method, guidance):
    sde, y = SDE_FACTORIES["ve"](), torch.tensor([0, 1, 2, 1, 0])
    if guidance == "free":
        score_fn = samplers.classifier_free_guidance(CLASSES.cond_score_fn(sde), y, 2.0, NULL)
    else:
        score_fn = samplers.classifier_guidance(CLASSES.score_fn(sde),
                                                CLASSES.classifier_log_prob_fn(sde),
                                                y.clamp(max=1), 2.0)
    result = samplers.sample(score_fn, sde, (5, 2), method, dtype=f64,
                             generator=torch.Generator().manual_seed(0), **SMALL.get(method, {}))
    assert result.x.shape == (5, 2) and torch.isfinite(result.x).all()


def test_adaptive_sde_rows_keep_their_labels_as_the_batch_shrinks():
    """Finished samples leave the batch at different times; each row's labels must follow it:
    the batch result equals each row sampled alone with its own label, bit for bit."""
    sde, y = SDE_FACTORIES["ve"](), torch.tensor([0, 1, 2, 1, 0, 2])

    def run(rows, labels):
        score_fn = samplers.classifier_free_guidance(CLASSES.cond_score_fn(sde), labels, 2.5, NULL)
        generators = [torch.Generator().manual_seed(50 + i) for i in rows]
        result = samplers.sample(score_fn, sde, (len(rows), 2), "adaptive_sde", dtype=f64,
                                 generator=generators, rtol=0.05)
        return result.x, result.info

    batch, stats = run(range(6), y)
    assert len(set(stats["nfe_per_sample"].tolist())) > 1       # rows did finish apart
    for i in range(6):
        assert torch.equal(run([i], int(y[i]))[0][0], batch[i])


def test_log_likelihood_with_classifier_guidance_sees_the_classifier_hessian():
    """At scale 1 the guided score is ∇ log p_t(x | y), so the flow's log-likelihood is that of
    the class component, which needs the divergence of the classifier's gradient too."""
    sde = SDE_FACTORIES["vp"]()
    x = CLASSES.sample_class(torch.zeros(8, dtype=torch.long), torch.Generator().manual_seed(0))
    guided = samplers.classifier_guidance(CLASSES.score_fn(sde),
                                          CLASSES.classifier_log_prob_fn(sde), 0, 1.0)
    options = dict(divergence="exact", eps=EPS, rtol=1e-6, atol=1e-6)
    logp = samplers.log_likelihood(guided, sde, x, **options).logp
    reference = samplers.log_likelihood(CLASSES.component(0).score_fn(sde), sde, x, **options)
    torch.testing.assert_close(logp, reference.logp, rtol=1e-4, atol=1e-4)


def test_one_int_label_applies_to_any_batch():
    sde = SDE_FACTORIES["vp"]()
    x, t = random_points(sde, n=5)
    guided = samplers.classifier_free_guidance(CLASSES.cond_score_fn(sde), 1, 1.0, NULL)
    assert isinstance(guided, ClassifierFreeGuidance)
    for rows in ([0, 2], [1, 2, 3, 4]):
        assert torch.equal(select_rows(guided, rows)(x[rows], t[rows]),
                           CLASSES.component(1).score(x[rows], t[rows], sde))
