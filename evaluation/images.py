"""Writing samples as PNG: image grids, and 2-D point clouds as density images (atomically;
with `root`, only inside that workdir: `run.files`)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from PIL import Image

from run.files import atomic_write


def image_grid(images: torch.Tensor, nrow: int = 0, padding: int = 1) -> np.ndarray:
    """uint8 `[B, C, H, W]` (C = 1 or 3) → one uint8 `[rows·(H+p)+p, nrow·(W+p)+p, 3]` mosaic."""
    b, c, h, w = images.shape
    nrow = nrow or math.ceil(math.sqrt(b))
    rows = math.ceil(b / nrow)
    grid = np.zeros((rows * (h + padding) + padding, nrow * (w + padding) + padding, 3), np.uint8)
    pixels = images.expand(-1, 3, -1, -1) if c == 1 else images
    pixels = pixels.permute(0, 2, 3, 1).cpu().numpy()
    for i in range(b):
        r, col = divmod(i, nrow)
        top, left = padding + r * (h + padding), padding + col * (w + padding)
        grid[top:top + h, left:left + w] = pixels[i]
    return grid


def save_png(picture: Image.Image, path, root: Optional[Path] = None) -> Path:
    """Write `picture` as a PNG file atomically."""
    return atomic_write(path, lambda f: picture.save(f, format="PNG"), root)


def save_image_grid(images: torch.Tensor, path, nrow: int = 0, upscale: int = 0,
                    root: Optional[Path] = None) -> Path:
    """Save a PNG grid of uint8 images; small images are enlarged (nearest) to ≥ 32 px."""
    grid = image_grid(images, nrow)
    upscale = upscale or max(1, 32 // images.shape[-1])
    picture = Image.fromarray(grid).resize((grid.shape[1] * upscale, grid.shape[0] * upscale),
                                           Image.NEAREST)
    return save_png(picture, path, root)


def fitted_limits(xy: np.ndarray, pad: float = 0.05, max_ratio: float = 4.0) -> tuple:
    """((x_lo, x_hi), (y_lo, y_hi)) holding every finite point of `xy` `[N, 2]` with a `pad`
    margin; the shorter side is widened to the longer (equal scales) unless they differ by more
    than `max_ratio`."""
    finite = xy[np.isfinite(xy).all(1)]
    if not len(finite):
        return (-1.0, 1.0), (-1.0, 1.0)
    lo, hi = finite.min(0), finite.max(0)
    center, span = (lo + hi) / 2, np.maximum(hi - lo, 1e-6) * (1 + 2 * pad)
    if span.max() <= max_ratio * span.min():
        span[:] = span.max()
    return tuple((float(c - s / 2), float(c + s / 2)) for c, s in zip(center, span))


def scatter_picture(points: torch.Tensor, size: int = 384) -> np.ndarray:
    """A 2-D point cloud `[N, 2]` as an RGB scatter plot with axes fitted to the points
    (`fitted_limits`), uint8 `[size, size, 3]` (matplotlib's Agg canvas, no display needed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    xy = points.detach().cpu().double().numpy()
    figure = Figure(figsize=(size / 96, size / 96), dpi=96)
    canvas = FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    axes.scatter(xy[:, 0], xy[:, 1], s=2, alpha=0.5, linewidths=0)
    (x_lo, x_hi), (y_lo, y_hi) = fitted_limits(xy[:, :2])
    axes.set_xlim(x_lo, x_hi)
    axes.set_ylim(y_lo, y_hi)
    axes.set_xlabel("x₁")
    axes.set_ylabel("x₂")
    axes.set_title(f"{len(xy)} samples", fontsize=9)
    figure.tight_layout()
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def save_scatter_png(points: torch.Tensor, path, root: Optional[Path] = None) -> Path:
    """A 2-D point cloud `[N, 2]` as a scatter plot with axes fitted to it (PNG)."""
    return save_png(Image.fromarray(scatter_picture(points)), path, root)
