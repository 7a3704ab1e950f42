"""`samplers.fit_schedule`: a grid from T to eps with the pilot's NFE counted, equal integrals of
the step density between its points, and bounded neighbouring step ratios."""
import numpy as np
import pytest
import torch

import samplers
from models.analytic import GaussianMixture
from samplers.fitted_schedule import _limit_ratios, equidistribute

f64 = torch.float64
MIXTURE = GaussianMixture(torch.tensor([0.3, 0.7], dtype=f64),
                          torch.tensor([[-0.8, 0.2], [0.6, -0.4]], dtype=f64),
                          torch.tensor([[0.01, 0.02], [0.005, 0.01]], dtype=f64))


def test_equidistribute_gives_equal_integrals_of_a_piecewise_linear_density():
    ell = np.linspace(-5.0, 5.0, 401)
    density = 1.0 + 3.0 * (ell > 0) * ell            # piecewise linear: the trapezoid rule is exact
    grid = equidistribute(ell, density, 8)
    fine = np.linspace(-5.0, 5.0, 200_001)
    values = np.interp(fine, ell, density)
    mass = [np.trapezoid(values[(fine >= a) & (fine <= b)], fine[(fine >= a) & (fine <= b)])
            for a, b in zip(grid[:-1], grid[1:])]
    assert grid[0] == -5.0 and grid[-1] == 5.0
    np.testing.assert_allclose(mass, np.full(8, np.trapezoid(values, fine) / 8), rtol=1e-3)


def test_limit_ratios_bounds_neighbours_and_keeps_the_total():
    steps = np.array([0.01, 1.0, 0.02, 0.5, 3.0])
    limited = _limit_ratios(steps, 2.5)
    ratios = limited[1:] / limited[:-1]
    assert np.all(ratios <= 2.5 + 1e-9) and np.all(ratios >= 1 / 2.5 - 1e-9)
    assert limited.sum() == pytest.approx(steps.sum(), rel=1e-12)


@pytest.mark.parametrize("num_steps", [1, 5, 12])
def test_grid_runs_from_T_to_eps_and_counts_the_pilot(any_sde, num_steps):
    calls = []

    def score(x, t):
        calls.append(1)
        return MIXTURE.score(x, t, any_sde)
    fitted = samplers.fit_schedule(score, any_sde, (16, 2), num_steps, pilot_steps=16, dtype=f64,
                                   generator=torch.Generator().manual_seed(0))
    times = fitted.times
    assert times.shape == (num_steps + 1,) and times.dtype == f64
    assert times[0] == any_sde.T and times[-1] == pytest.approx(1e-3)
    assert bool((times[1:] < times[:-1]).all())
    assert fitted.nfe == len(calls) == 16 + 1
    result = samplers.sample(score, any_sde, (4, 2), "unipc", schedule=times, dtype=f64)
    assert result.nfe == num_steps + 1 and torch.isfinite(result.x).all()


@pytest.mark.parametrize("options, field", [
    (dict(order=4), "order"), (dict(pilot_steps=3), "pilot_steps"), (dict(floor=0.0), "floor"),
    (dict(max_ratio=1.0), "max_ratio"), (dict(num_steps=0), "num_steps"),
])
def test_bad_options(options, field):
    import sde_lib
    kwargs = dict(num_steps=4)
    kwargs.update(options)
    with pytest.raises(ValueError, match=field):
        samplers.fit_schedule(lambda x, t: -x, sde_lib.VPSDE(), (2, 2), **kwargs)
