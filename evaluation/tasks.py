"""`--mode sample` tasks beyond plain generation (`sampling.task`), each writing an `.npz` and a
PNG grid: inpainting and colorization of test images (Song et al. 2021, App. I) and
interpolation between test images through the probability-flow ODE's latents.

Every task takes the first `eval.num_samples` test images (or pairs of them), uses the model's
(class-conditional / guided) score as `--mode sample` does, and the PC options of
`config.sampling` (predictor, corrector, snr, n_steps_each, num_steps, eps, noise_removal).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

import samplers
from evaluation.images import save_image_grid
from evaluation.sampling import guided_score_fn, num_classes_of, sample_generators, sample_labels
from training.datasets import build_dataset
from training.pipeline import scale_images, to_uint8_images

TASKS = ("generate", "inpaint", "colorize", "interpolate")   # config.sampling.task
MASKS = ("right_half", "bottom_half", "center", "random_pixels")
INTERPOLATION_STEPS = 8


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


def pc_options(config) -> dict:
    """The PC options of `config.sampling` for `samplers.inpaint` / `colorize`."""
    sampling = config.sampling
    return dict(predictor=sampling.predictor, corrector=sampling.corrector, snr=sampling.snr,
                n_steps=sampling.n_steps_each, eps=sampling.eps, denoise=sampling.noise_removal,
                num_steps=sampling.num_steps or None, probability_flow=sampling.probability_flow)


def _test_images(config, count: int, device) -> torch.Tensor:
    data = build_dataset(config.data, "test").data
    if data.dtype != torch.uint8:
        raise ValueError(f"config.sampling.task={config.sampling.task!r} needs image data")
    return scale_images(data[:count], centered=config.data.centered, dequantize=False).to(device)


def _save(config, rows, folder: Path, name: str) -> Path:
    """Rows of image batches `[n, C, H, W]` → `<name>.npz` (uint8, NHWC) and one PNG grid with
    one column per example (each row: originals, inputs, results, …)."""
    images = [to_uint8_images(r.float().cpu(), centered=config.data.centered) for r in rows]
    folder.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(folder / f"{name}.npz",
                        **{f"row{i}": im.permute(0, 2, 3, 1).numpy() for i, im in enumerate(images)})
    return save_image_grid(torch.cat(images), folder / f"{name}.png", nrow=images[0].shape[0])


def run_task(config, model, sde, folder: Path, device, classifier=None) -> Path:
    """Run `config.sampling.task` ("inpaint", "colorize" or "interpolate") into `folder`."""
    task, count = config.sampling.task, config.eval.num_samples
    seed = config.eval.get("seed", 0)
    indices = range(count)
    labels = sample_labels(config, indices, num_classes_of(config, model, classifier))
    generator = sample_generators(seed, indices, device)
    if task == "interpolate":
        return _interpolate(config, model, sde, folder, device)
    x = _test_images(config, count, device)
    score_fn = guided_score_fn(config, model, labels, classifier)
    if task == "inpaint":
        mask = make_mask(config.sampling.mask, x.shape,
                         torch.Generator().manual_seed(seed)).to(device)
        result = samplers.inpaint(score_fn, sde, x, mask, generator=generator, **pc_options(config))
        shown = x * mask + (1 - mask) * (0.0 if config.data.centered else 0.5)  # unknown: gray
        return _save(config, [x, shown, result.x], folder, "inpaint")
    if task == "colorize":
        if x.shape[1] != 3:
            raise ValueError("config.sampling.task='colorize' needs 3-channel images "
                             f"(config.data.num_channels=3), got {x.shape[1]}")
        gray = x.mean(dim=1, keepdim=True)
        result = samplers.colorize(score_fn, sde, gray, generator=generator, **pc_options(config))
        return _save(config, [x, gray.expand_as(x), result.x], folder, "colorize")
    raise ValueError(f"Unknown config.sampling.task {task!r}; expected one of {list(TASKS)}")


def _interpolate(config, model, sde, folder, device) -> Path:
    """Encode test images 2k and 2k+1 with the probability-flow ODE of the unconditional score
    (a class-conditional model's null label), decode `INTERPOLATION_STEPS` points of the
    spherical path between their latents; one row per pair."""
    pairs = max(1, config.eval.num_samples // 2)
    x = _test_images(config, 2 * pairs, device)
    options = dict(eps=config.sampling.eps, rtol=config.sampling.rtol, atol=config.sampling.atol,
                   ode_method=config.sampling.ode_method)
    z = samplers.encode(model, sde, x, **options).z
    alphas = torch.linspace(0, 1, INTERPOLATION_STEPS, dtype=z.dtype, device=z.device)
    path = torch.cat([samplers.slerp(z[2 * k], z[2 * k + 1], alphas) for k in range(pairs)])
    decoded = samplers.decode(model, sde, path, **options).x
    rows = decoded.view(pairs, INTERPOLATION_STEPS, *x.shape[1:])
    return _save(config, list(rows), folder, "interpolate")
