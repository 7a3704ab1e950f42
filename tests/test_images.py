"""Sample pictures: the scatter plot's axes hold every point."""
import numpy as np
import torch

from evaluation.images import fitted_limits, scatter_picture


def test_limits_hold_every_point_with_equal_scales():
    xy = np.random.default_rng(0).normal([10.0, -4.0], [6.0, 2.0], size=(500, 2))
    (x_lo, x_hi), (y_lo, y_hi) = fitted_limits(xy)
    assert x_lo < xy[:, 0].min() and x_hi > xy[:, 0].max()
    assert y_lo < xy[:, 1].min() and y_hi > xy[:, 1].max()
    assert np.isclose(x_hi - x_lo, y_hi - y_lo)          # spans within 4x: equal scales
    (x_lo, x_hi), (y_lo, y_hi) = fitted_limits(np.c_[xy[:, 0] * 100, xy[:, 1]])
    assert (x_hi - x_lo) > 10 * (y_hi - y_lo) and y_hi > xy[:, 1].max()


def test_limits_of_degenerate_clouds():
    assert fitted_limits(np.full((3, 2), np.nan)) == ((-1.0, 1.0), (-1.0, 1.0))
    (x_lo, x_hi), _ = fitted_limits(np.ones((4, 2)))
    assert x_lo < 1 < x_hi


def test_far_points_are_drawn():
    picture = scatter_picture(torch.randn(200, 2) * 0.1 + 25.0)
    assert picture.shape == (384, 384, 3)
    pixels = picture.astype(int)
    blue = (pixels[..., 2] - pixels[..., 0] > 40).sum()   # matplotlib's blue dots, not the axes
    assert blue > 50
