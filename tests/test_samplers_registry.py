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


def unit_score(x, t):
    return -x


def test_all_methods_are_registered():
    assert set(METHODS) <= set(samplers.SAMPLERS)


@pytest.mark.parametrize("method", sorted(METHODS))
@pytest.mark.parametrize("shape", [(3, 5), (2, 3, 4, 4)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shapes_and_dtypes(any_sde, method, shape, dtype):
    result = samplers.sample(unit_score, any_sde, shape, method, dtype=dtype, **METHODS[method])
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
