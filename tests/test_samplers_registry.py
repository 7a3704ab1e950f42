"""The shared sampler signature for every method of issue 3: shapes, dtypes, randomness."""
import pytest
import torch

import samplers
from tests.conftest import SDE_FACTORIES

METHODS = {  # few steps: these tests are about the contract, not accuracy
    "pc": dict(num_steps=4), "ancestral": dict(num_steps=4), "reverse_diffusion": dict(num_steps=4),
    "euler_maruyama": dict(num_steps=4), "annealed_langevin": dict(num_steps=4, n_steps_each=1),
    "ode": dict(rtol=1e-3, atol=1e-3), "sdeint": dict(num_steps=4),
}
# Fast options for the registry-wide contract tests; a method missing here runs with its own
# defaults, so every registered method is tested (iterating `samplers.SAMPLERS`).
FAST = {**METHODS, "ddim": dict(num_steps=4), "heun": dict(num_steps=3),
        "dpm_solver": dict(num_steps=4), "dpm_solver_sde": dict(num_steps=4),
        "unipc": dict(num_steps=4), "adaptive_sde": dict(abstol=0.05, reltol=0.1),
        "dpm_adaptive": dict(abstol=0.05, reltol=0.2)}
ALL_METHODS = sorted(samplers.SAMPLERS)


def unit_score(x, t):
    return -x


def test_all_methods_are_registered():
    assert set(METHODS) <= set(samplers.SAMPLERS)


@pytest.mark.parametrize("method", ALL_METHODS)
@pytest.mark.parametrize("shape", [(3, 5), (2, 3, 4, 4)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shapes_and_dtypes(any_sde, method, shape, dtype):
    result = samplers.sample(unit_score, any_sde, shape, method, dtype=dtype,
                             **FAST.get(method, {}))
    assert isinstance(result, samplers.SampleResult)
    assert result.x.shape == shape and result.x.dtype == dtype and torch.isfinite(result.x).all()
    assert isinstance(result.nfe, int) and result.nfe >= 1


# The Langevin corrector's step size uses norms averaged over the batch (as in the reference code),
# so "pc" with it depends on the batch; with corrector "ald" every method is batch-independent.
BATCH_FREE = {**METHODS, "pc": dict(num_steps=4, corrector="ald")}


@pytest.mark.parametrize("method", sorted(BATCH_FREE))
def test_per_sample_generators_make_samples_batch_independent(method):
    """With one generator per sample, sample i is the same in any batch (as evaluation needs)."""
    sde = SDE_FACTORIES["vp"]()

    def generators(indices):
        return [torch.Generator().manual_seed(100 + i) for i in indices]

    full = samplers.sample(unit_score, sde, (4, 3), method, generator=generators(range(4)),
                           dtype=torch.float64, **BATCH_FREE[method])
    part = samplers.sample(unit_score, sde, (2, 3), method, generator=generators([2, 3]),
                           dtype=torch.float64, **BATCH_FREE[method])
    torch.testing.assert_close(full.x[2:], part.x, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_global_rng_when_no_generator(method):
    sde = SDE_FACTORIES["ve"]()
    torch.manual_seed(0)
    first = samplers.sample(unit_score, sde, (2, 2), method, **METHODS[method])
    torch.manual_seed(0)
    second = samplers.sample(unit_score, sde, (2, 2), method, **METHODS[method])
    assert torch.equal(first.x, second.x)


def test_unknown_method_lists_the_valid_ones():
    with pytest.raises(ValueError, match="expected one of .*'ode'"):
        samplers.sample(unit_score, SDE_FACTORIES["vp"](), (2, 2), "no_such_method")


@pytest.mark.parametrize("method", ALL_METHODS)
@pytest.mark.parametrize("sde_name", ["vp", "ve"])
def test_x_T_replaces_the_prior_draw(method, sde_name):
    """Given the prior draw as x_T and the generator past it, every method runs identically."""
    sde, shape, options = SDE_FACTORIES[sde_name](), (3, 2), FAST.get(method, {})
    drawn = samplers.sample(unit_score, sde, shape, method, dtype=torch.float64,
                            generator=torch.Generator().manual_seed(3), **options)
    generator = torch.Generator().manual_seed(3)
    x_T = sde.prior_sampling(shape, generator=generator, dtype=torch.float64)
    kept = x_T.clone()
    given = samplers.sample(unit_score, sde, shape, method, dtype=torch.float64, x_T=x_T,
                            generator=generator, **options)
    assert torch.equal(drawn.x, given.x) and drawn.nfe == given.nfe
    assert torch.equal(x_T, kept)                       # not modified in place
    with pytest.raises(ValueError, match="x_T"):
        samplers.sample(unit_score, sde, shape, method, x_T=torch.zeros(2, 2), **options)


@pytest.mark.parametrize("method", ALL_METHODS)
def test_callback_sees_every_step_and_changes_nothing(method):
    """callback(i, t, x, denoised): increasing i from 0, t `[b]` float64 in [eps, T], x `[b, ...]`
    finite, denoised None or shaped like x; the samples are those of a run without it."""
    sde, shape, options = SDE_FACTORIES["vp"](), (3, 2, 2), FAST.get(method, {})
    calls = []

    def callback(i, t, x, denoised):
        calls.append((i, t.clone(), x.clone(), None if denoised is None else denoised.clone()))
    plain = samplers.sample(unit_score, sde, shape, method, dtype=torch.float64,
                            generator=torch.Generator().manual_seed(1), **options)
    seen = samplers.sample(unit_score, sde, shape, method, dtype=torch.float64,
                           generator=torch.Generator().manual_seed(1), callback=callback,
                           **options)
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
        samplers.sample(unit_score, sde, shape, method, callback="progress", **options)
