"""bits_per_dim against a case computed by hand."""
import math

import pytest
import torch

from samplers import bits_per_dim


def test_uniform_density_on_the_data_interval():
    """A uniform density on [0, 1]^D gives every one of the 256^D points P = 256^−D: 8 bits/dim.

    On [−1, 1]^D the uniform density is 2^−D, log p = −D·ln 2, and again exactly 8 bits/dim.
    """
    D = 3072
    torch.testing.assert_close(bits_per_dim(torch.zeros(2, dtype=torch.float64), D, centered=False),
                               torch.full((2,), 8.0, dtype=torch.float64))
    logp = torch.full((2,), -D * math.log(2), dtype=torch.float64)
    torch.testing.assert_close(bits_per_dim(logp, D, centered=True),
                               torch.full((2,), 8.0, dtype=torch.float64))


def test_hand_computed_value():
    # log p = −1000 nats over D = 100 dims on [−1, 1], 256 bins:
    # 1000/(100·ln 2) = 14.4270 bits, plus log₂(256/2) = 7: 21.4270.
    value = bits_per_dim(torch.tensor([-1000.0], dtype=torch.float64), 100, centered=True).item()
    assert value == pytest.approx(21.42695, abs=1e-5)
    # Same density for 16-level data on [0, 1]: offset log₂ 16 = 4.
    logp = torch.tensor([-1000.0], dtype=torch.float64)
    value = bits_per_dim(logp, 100, centered=False, bins=16).item()
    assert value == pytest.approx(18.42695, abs=1e-5)


@pytest.mark.parametrize("kwargs, field", [(dict(num_dims=0), "num_dims"),
                                           (dict(num_dims=4, bins=0), "bins")])
def test_bad_arguments(kwargs, field):
    with pytest.raises(ValueError, match=field):
        bits_per_dim(torch.zeros(1), centered=True, **kwargs)
