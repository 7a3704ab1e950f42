"""Shared sampler helpers: Tweedie denoising, the time grid, NFE counting and the
score function's optional capabilities."""
import torch

from models.analytic import GaussianMixture
from samplers.common import CountedScore, capabilities, select_rows, tweedie_denoise
from samplers.schedules import get_time_steps
from tests.conftest import SDE_FACTORIES

f64 = torch.float64


def test_denoise_is_tweedie_for_gaussian_data():
    """E[x_0 | x_t] = μ + a·v·(x − aμ)/(a²v + σ²) for N(μ, v) data."""
    mu, var = 0.7, 0.09
    gaussian = GaussianMixture([1.0], [[mu]], [var])
    for sde in (f() for f in SDE_FACTORIES.values()):
        t = torch.full((6,), 0.2, dtype=f64)
        x = torch.linspace(-2, 2, 6, dtype=f64)[:, None]
        a, std = sde.marginal_coeffs(t)
        expected = mu + (a * var / (a ** 2 * var + std ** 2))[:, None] * (x - a[:, None] * mu)
        torch.testing.assert_close(tweedie_denoise(gaussian.score_fn(sde), sde, x, t), expected)


def test_the_uniform_grid_runs_from_T_to_eps():
    sde = SDE_FACTORIES["ve"]()
    times = get_time_steps(sde, "uniform", 4, 1e-3)
    expected = torch.tensor([1.0, 0.75025, 0.5005, 0.25075, 1e-3], dtype=f64)
    torch.testing.assert_close(times, expected)


def test_counted_score_counts_calls_and_casts_time():
    seen = []
    counted = CountedScore(lambda x, t: seen.append(t.dtype) or x)
    for _ in range(3):
        counted(torch.zeros(2, 1), torch.zeros(2, dtype=f64))
    assert counted.nfe == 3 and seen == [torch.float32] * 3


class _Model:
    """A score function with every optional capability (`sde_lib.score_fn`), logging its calls."""
    learn_variance = True

    def __init__(self, rows=None, log=None):
        self.rows, self.log = rows, log if log is not None else []

    def __call__(self, x, t):
        self.log.append(("score", self.rows))
        return -x

    def forward_with_variance(self, x, t):
        self.log.append(("variance", self.rows))
        return -x, torch.full_like(x, 0.5)

    def select_rows(self, index):
        return _Model(list(index), self.log)

    def chain_time(self, index):
        return index.to(f64) / 10


def test_capabilities_are_discovered_once_and_absent_ones_are_none():
    assert capabilities(lambda x, t: x) == (None, None, None)
    found = capabilities(_Model())
    assert all(callable(c) for c in found)
    no_variance = _Model()
    no_variance.learn_variance = False          # the method exists but the model has no v
    assert capabilities(no_variance).forward_with_variance is None


def test_counted_views_count_into_their_parent_at_any_depth():
    model = _Model()
    counted = CountedScore(model)
    x, t = torch.zeros(4, 2), torch.zeros(4)
    counted(x, t)
    view = select_rows(counted, [1, 3])          # the function form follows the counting view
    view(x[:2], t[:2])
    deeper = select_rows(view, [0])
    deeper(x[:1], t[:1])
    score, v = counted.with_variance(x, t)
    assert counted.nfe == 4 and view.nfe == 2 and deeper.nfe == 1
    assert model.log == [("score", None), ("score", [1, 3]), ("score", [0]), ("variance", None)]
    assert torch.equal(counted.chain_time(torch.tensor([5])), torch.tensor([0.5], dtype=f64))
    # Wrapping a wrapped score keeps the counting methods of the inner wrapper.
    outer = CountedScore(counted)
    outer.with_variance(x, t)
    assert outer.nfe == 1 and counted.nfe == 5


def test_a_score_without_variance_is_refused_where_it_is_wrapped():
    import pytest
    counted = CountedScore(lambda x, t: -x)
    assert not counted.has_variance and counted.chain_time(torch.tensor([1])) is None
    with pytest.raises(ValueError, match="learned variances"):
        counted.with_variance(torch.zeros(1, 1), torch.zeros(1))


def test_a_score_of_the_wrong_shape_or_type_is_refused_at_its_first_evaluation():
    import pytest
    import samplers
    sde = SDE_FACTORIES["vp"]()
    for bad, words in ((lambda x, t: x[:, :1], r"returned \(2, 1\) torch.float32 for x of shape"),
                       (lambda x, t: x.long(), "torch.int64"),
                       (lambda x, t: x.numpy(), "returned ndarray")):
        for method in ("ddim", "pc", "dpm_solver"):
            with pytest.raises(ValueError, match=words):
                samplers.sample(bad, sde, (2, 2), method, num_steps=3)
