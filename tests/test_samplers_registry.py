"""The shared sampler contract, for every method registered in `samplers.SAMPLERS`: shapes and
dtypes, exact NFE, per-sample generators, the global RNG, and unknown names. The tests iterate
the registry itself, so a newly registered sampler cannot skip them; `QUICK` only shortens runs
(a method missing from it runs with its defaults)."""
import pytest
import torch

import samplers
from tests.conftest import SDE_FACTORIES

QUICK = {  # few steps: these tests are about the contract, not accuracy
    "pc": dict(num_steps=4), "ancestral": dict(num_steps=4), "reverse_diffusion": dict(num_steps=4),
    "euler_maruyama": dict(num_steps=4), "annealed_langevin": dict(num_steps=4, n_steps_each=1),
    "ode": dict(rtol=1e-3, atol=1e-3), "sdeint": dict(num_steps=4), "ddim": dict(num_steps=4),
    "heun": dict(num_steps=3), "dpm_solver": dict(num_steps=4),
    "dpm_solver_sde": dict(num_steps=4), "unipc": dict(num_steps=4),
    "adaptive_sde": dict(atol=0.05, rtol=0.1), "dpm_adaptive": dict(atol=0.05, rtol=0.2),
}
# The Langevin corrector's step size uses norms averaged over the batch (as in the reference
# code), so "pc" with it depends on the batch; with corrector "ald" every method is
# batch-independent.
BATCH_FREE = {"pc": dict(num_steps=4, corrector="ald")}
METHODS = sorted(samplers.SAMPLERS)


def options(method: str) -> dict:
    return QUICK.get(method, {})


class Counting:
    """The exact score of N(0, I) data under `sde` (p_t = N(0, (a² + σ²)I)), counting calls."""

    def __init__(self, sde):
        self.sde, self.calls = sde, 0

    def __call__(self, x, t):
        self.calls += 1
        mean_coeff, std = self.sde.marginal_coeffs(t.double())
        return -x / (mean_coeff ** 2 + std ** 2).to(x.dtype).view(-1, *[1] * (x.ndim - 1))


def unit_score(sde):
    return Counting(sde)


def test_the_registry_holds_every_documented_method():
    documented = {"pc", "ancestral", "reverse_diffusion", "euler_maruyama", "annealed_langevin",
                  "ode", "sdeint", "ddim", "heun", "dpm_solver", "adaptive_sde",
                  "dpm_solver_sde", "dpm_adaptive", "unipc"}
    assert documented <= set(METHODS)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("shape, dtype", [((3, 5), torch.float32),
                                          ((2, 3, 4, 4), torch.float64)])
def test_shapes_and_dtypes(method, shape, dtype):
    # Shapes and dtypes do not depend on the SDE: each method meets one, in turn.
    sde = SDE_FACTORIES[sorted(SDE_FACTORIES)[METHODS.index(method) % len(SDE_FACTORIES)]]()
    result = samplers.sample(unit_score(sde), sde, shape, method, dtype=dtype,
                             **options(method))
    assert isinstance(result, samplers.SampleResult)
    assert result.x.shape == shape and result.x.dtype == dtype and torch.isfinite(result.x).all()
    assert isinstance(result.nfe, int) and result.nfe >= 1


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("sde_name", ["vp", "ve"])
def test_nfe_counts_every_score_evaluation(method, sde_name):
    sde = SDE_FACTORIES[sde_name]()
    score = Counting(sde)
    result = samplers.sample(score, sde, (3, 2), method,
                             generator=torch.Generator().manual_seed(0), **options(method))
    assert result.nfe == score.calls


@pytest.mark.parametrize("method", METHODS)
def test_per_sample_generators_make_samples_batch_independent(method):
    """With one generator per sample, sample i is the same in any batch (as evaluation needs)."""
    sde = SDE_FACTORIES["vp"]()
    opts = BATCH_FREE.get(method, options(method))

    def generators(indices):
        return [torch.Generator().manual_seed(100 + i) for i in indices]

    full = samplers.sample(unit_score(sde), sde, (4, 3), method, generator=generators(range(4)),
                           dtype=torch.float64, **opts)
    part = samplers.sample(unit_score(sde), sde, (2, 3), method, generator=generators([2, 3]),
                           dtype=torch.float64, **opts)
    torch.testing.assert_close(full.x[2:], part.x, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("method", METHODS)
def test_global_rng_when_no_generator(method):
    sde = SDE_FACTORIES["ve"]()
    torch.manual_seed(0)
    first = samplers.sample(unit_score(sde), sde, (2, 2), method, **options(method))
    torch.manual_seed(0)
    second = samplers.sample(unit_score(sde), sde, (2, 2), method, **options(method))
    assert torch.equal(first.x, second.x)


@pytest.mark.parametrize("method", METHODS)
def test_every_method_is_public_and_documented(method):
    fn = samplers.SAMPLERS[method]
    assert fn.__doc__ and len(" ".join(fn.__doc__.split())) >= 60, method  # more than a title
    assert samplers.build_sampler({"method": method}).method == method


def test_unknown_method_lists_the_valid_ones():
    with pytest.raises(ValueError, match="expected one of .*'ode'"):
        samplers.sample(unit_score(SDE_FACTORIES["vp"]()), SDE_FACTORIES["vp"](), (2, 2),
                        "no_such_method")
    with pytest.raises(ValueError, match="expected one of .*'pc'"):
        samplers.build_sampler({"method": "no_such_method"})


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("sde_name", ["vp", "ve"])
def test_x_T_replaces_the_prior_draw(method, sde_name):
    """Given the prior draw as x_T and the generator past it, every method runs identically."""
    sde, shape, opts = SDE_FACTORIES[sde_name](), (3, 2), options(method)
    drawn = samplers.sample(unit_score(sde), sde, shape, method, dtype=torch.float64,
                            generator=torch.Generator().manual_seed(3), **opts)
    generator = torch.Generator().manual_seed(3)
    x_T = sde.prior_sampling(shape, generator=generator, dtype=torch.float64)
    kept = x_T.clone()
    given = samplers.sample(unit_score(sde), sde, shape, method, dtype=torch.float64, x_T=x_T,
                            generator=generator, **opts)
    assert torch.equal(drawn.x, given.x) and drawn.nfe == given.nfe
    assert torch.equal(x_T, kept)                       # not modified in place
    with pytest.raises(ValueError, match="x_T"):
        samplers.sample(unit_score(sde), sde, shape, method, x_T=torch.zeros(2, 2), **opts)


@pytest.mark.parametrize("method", METHODS)
def test_callback_sees_every_step_and_changes_nothing(method):
    """callback(i, t, x, denoised): increasing i from 0, t `[b]` float64 in [eps, T], x `[b, ...]`
    finite, denoised None or shaped like x; the samples are those of a run without it."""
    sde, shape, opts = SDE_FACTORIES["vp"](), (3, 2, 2), options(method)
    calls = []

    def callback(i, t, x, denoised):
        calls.append((i, t.clone(), x.clone(), None if denoised is None else denoised.clone()))
    plain = samplers.sample(unit_score(sde), sde, shape, method, dtype=torch.float64,
                            generator=torch.Generator().manual_seed(1), **opts)
    seen = samplers.sample(unit_score(sde), sde, shape, method, dtype=torch.float64,
                           generator=torch.Generator().manual_seed(1), callback=callback,
                           **opts)
    assert torch.equal(plain.x, seen.x) and plain.nfe == seen.nfe
    indices = [call[0] for call in calls]
    assert len(calls) >= 2 and indices[0] == 0
    assert all(b > a for a, b in zip(indices, indices[1:])), indices
    for _, t, x, denoised in calls:
        assert t.dtype == torch.float64 and t.shape == x.shape[:1] and x.shape[1:] == shape[1:]
        assert bool(((t >= 1e-3 - 1e-9) & (t <= sde.T + 1e-9)).all()), t
        assert bool(torch.isfinite(x).all())
        assert denoised is None or denoised.shape == x.shape
    with pytest.raises(ValueError, match="callback"):
        samplers.sample(unit_score(sde), sde, shape, method, callback="progress", **opts)
