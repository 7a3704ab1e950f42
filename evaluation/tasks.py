"""`--mode sample` tasks beyond plain generation (`sampling.task`), each writing an `.npz` and a
PNG grid: inpainting, colorization and super-resolution (×`superres_factor` average pooling) of
test images, conditioned by `sampling.condition_method` (`samplers.condition`: replacement,
Song et al. 2021, App. I; sequential Monte Carlo; RePaint; DPS), and interpolation between test
images through the probability-flow ODE's latents.

Every task takes the first `num_samples` test images (or pairs of them), uses the model's
(class-conditional / guided) score as `--mode sample` does, and the sampler options it is given
(`samplers.config.config_options` of the config's sampling section, for the condition method's
`samplers.condition_options`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional

import torch

import samplers
from data import DataTransform
from evaluation.images import save_image_grid
from evaluation.sampling import Guidance, check_finite_samples, sample_generators
from run.files import save_npz

TASKS = ("generate", "inpaint", "colorize", "superres", "interpolate")   # config.sampling.task
CONDITION_TASKS = ("inpaint", "colorize", "superres")   # conditioned by samplers.condition
MASKS = ("right_half", "bottom_half", "center", "random_pixels")
INTERPOLATION_STEPS = 8


@dataclass
class TaskSettings:
    """A task, its test images (uint8 `[N, C, H, W]`, the first `num_samples` used) and their
    class labels (where the data set has them), the seed, the inpainting mask kind, the
    super-resolution factor, the condition method and its options (`options`, names in
    `samplers.condition_options(condition_method)`), and the options of `samplers.encode` /
    `decode` (`ode_options`)."""
    task: str
    test_images: torch.Tensor
    num_samples: int
    test_labels: Optional[torch.Tensor] = None
    seed: int = 0
    mask: str = "right_half"
    superres_factor: int = 2
    condition_method: str = "replacement"
    options: Dict[str, Any] = field(default_factory=dict)
    ode_options: Dict[str, Any] = field(default_factory=dict)


def make_mask(kind: str, shape, generator: torch.Generator) -> torch.Tensor:
    """A 0/1 mask `[B, 1, H, W]` (1 = known pixel) for images of `shape` `[B, C, H, W]`."""
    b, _, h, w = shape
    mask = torch.ones(b, 1, h, w)
    if kind == "right_half":
        mask[..., w // 2:] = 0
    elif kind == "bottom_half":
        mask[..., h // 2:, :] = 0
    elif kind == "center":
        mask[..., h // 4:h - h // 4, w // 4:w - w // 4] = 0
    elif kind == "random_pixels":
        mask = (torch.rand(b, 1, h, w, generator=generator) < 0.5).float()
    else:
        raise ValueError(f"Unknown config.sampling.mask {kind!r}; expected one of {list(MASKS)}")
    return mask


def _test_images(settings: TaskSettings, transform: DataTransform, count: int,
                 device) -> torch.Tensor:
    data = settings.test_images
    if data.dtype != torch.uint8:
        raise ValueError(f"config.sampling.task={settings.task!r} needs image data")
    return transform.images(data[:count]).to(device)


def _save(transform: DataTransform, rows: Dict[str, torch.Tensor], folder: Path, name: str,
          root: Optional[Path], stats: Optional[dict] = None) -> Path:
    """Named image batches `[n, C, H, W]` (e.g. original, input, result) → `<name>.npz` (uint8,
    NHWC, one array per name) and one PNG grid with one column per example and one row per
    name, written atomically."""
    check_finite_samples(torch.cat([r.float().cpu() for r in rows.values()]))
    images = {key: transform.to_uint8(r.float().cpu()) for key, r in rows.items()}
    save_npz(folder / f"{name}.npz",
             {key: im.permute(0, 2, 3, 1).numpy() for key, im in images.items()}, root)
    first = next(iter(images.values()))
    return save_image_grid(torch.cat(list(images.values())), folder / f"{name}.png",
                           nrow=first.shape[0], root=root)


def run_task(settings: TaskSettings, model, sde, transform: DataTransform, folder: Path,
             guidance: Guidance, root: Optional[Path] = None,
             stats: Optional[dict] = None) -> Path:
    """Run task "inpaint", "colorize", "superres" or "interpolate" into `folder`; returns the
    PNG's path (rows: original, input, result; or one row per interpolated pair). A `stats`
    dict receives `nfe` (a one-item list: the run's score evaluations)."""
    stats = {} if stats is None else stats
    device = next(model.parameters()).device
    task, count = settings.task, settings.num_samples
    indices = range(count)
    generator = sample_generators(settings.seed, indices, device)
    if task == "interpolate":
        return _interpolate(settings, model, sde, transform, folder, root, stats)
    x = _test_images(settings, transform, count, device)
    score_fn = guidance.score_fn(model, indices)
    options = dict(settings.options, method=settings.condition_method, generator=generator)
    if task == "inpaint":
        mask = make_mask(settings.mask, x.shape,
                         torch.Generator().manual_seed(settings.seed)).to(device)
        result = samplers.inpaint(score_fn, sde, x, mask, **options)
        stats["nfe"] = [int(result.nfe)]
        shown = x * mask + (1 - mask) * (0.0 if transform.centered else 0.5)  # unknown: gray
        return _save(transform, {"original": x, "input": shown, "result": result.x}, folder,
                     "inpaint", root)
    if task == "colorize":
        if x.shape[1] != 3:
            raise ValueError("config.sampling.task='colorize' needs 3-channel images "
                             f"(config.data.num_channels=3), got {x.shape[1]}")
        gray = x.mean(dim=1, keepdim=True)
        result = samplers.colorize(score_fn, sde, gray, **options)
        stats["nfe"] = [int(result.nfe)]
        return _save(transform, {"original": x, "input": gray.expand_as(x), "result": result.x},
                     folder, "colorize", root)
    if task == "superres":
        factor = settings.superres_factor
        low = samplers.AvgPool(factor)(x)
        result = samplers.condition(score_fn, sde, low, samplers.AvgPool(factor), **options)
        stats["nfe"] = [int(result.nfe)]
        shown = low.repeat_interleave(factor, dim=2).repeat_interleave(factor, dim=3)
        return _save(transform, {"original": x, "input": shown, "result": result.x}, folder,
                     "superres", root)
    raise ValueError(f"Unknown config.sampling.task {task!r}; expected one of {list(TASKS)}")


def _interpolate(settings: TaskSettings, model, sde, transform: DataTransform,
                 folder: Path, root: Optional[Path], stats: dict) -> Path:
    """Encode test images 2k and 2k+1 with the probability-flow ODE of the unconditional score
    (a class-conditional model's null label), decode `INTERPOLATION_STEPS` points of the
    spherical path between their latents; one row per pair."""
    device = next(model.parameters()).device
    pairs = max(1, settings.num_samples // 2)
    x = _test_images(settings, transform, 2 * pairs, device)
    encoded = samplers.encode(model, sde, x, **settings.ode_options)
    z = encoded.z
    alphas = torch.linspace(0, 1, INTERPOLATION_STEPS, dtype=z.dtype, device=z.device)
    path = torch.cat([samplers.slerp(z[2 * k], z[2 * k + 1], alphas) for k in range(pairs)])
    decoded = samplers.decode(model, sde, path, **settings.ode_options)
    stats["nfe"] = [int(encoded.nfe + decoded.nfe)]
    rows = decoded.x.view(pairs, INTERPOLATION_STEPS, *x.shape[1:])    # one row per pair
    return _save(transform, {f"pair{k}": row for k, row in enumerate(rows)}, folder,
                 "interpolate", root)
