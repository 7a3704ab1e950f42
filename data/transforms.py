"""From stored examples to model inputs and back: flips, dequantization and scaling.

Images: uint8 v ∈ {0, …, 255} → [0, 1] as (v + u)/256 with u ~ U[0, 1) under uniform
dequantization, else v/255; then [-1, 1] when `centered`. Vectors pass through unchanged.
`DataTransform` holds these choices once (built from `config.data` by `build_transform`), so
nothing below the builders reads the config per batch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import torch

# `share = (start, total)`: a tensor holds rows start … start + B − 1 of a batch of `total`;
# random draws are those of the whole batch, so a rank's share is augmented exactly as the
# same rows of the whole batch would be.
Share = Optional[Tuple[int, int]]


def _rand(shape, generator, share: Share) -> torch.Tensor:
    """U[0, 1) draws of shape `shape`, or the `share` rows of the whole batch's draws."""
    if share is None:
        return torch.rand(shape, generator=generator)
    start, total = share
    return torch.rand((total, *shape[1:]), generator=generator)[start:start + shape[0]]


def scale_images(raw: torch.Tensor, *, centered: bool, dequantize: bool,
                 generator: Optional[torch.Generator] = None, share: Share = None
                 ) -> torch.Tensor:
    """uint8 `[B, C, H, W]` → float32 in [0, 1] (or [-1, 1] when `centered`)."""
    x = raw.float()
    if dequantize:
        x = (x + _rand(x.shape, generator, share)) / 256.0
    else:
        x = x / 255.0
    return 2 * x - 1 if centered else x


def to_uint8_images(x: torch.Tensor, *, centered: bool) -> torch.Tensor:
    """Inverse of `scale_images` for model outputs: clamp to the data range, round to uint8."""
    x = (x + 1) / 2 if centered else x
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


def random_flip(x: torch.Tensor, generator: Optional[torch.Generator] = None,
                share: Share = None) -> torch.Tensor:
    """Mirror each image left-right with probability ½."""
    flip = _rand((x.shape[0],), generator, share) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


@dataclass(frozen=True)
class DataTransform:
    """How stored examples become model inputs: the data range and the augmentations.

    `centered`: images in [-1, 1] (else [0, 1]); `dequantize`: uniform dequantization of
    training batches; `flip`: random left-right flips of training batches.
    """
    centered: bool
    dequantize: bool = False
    flip: bool = False

    def __call__(self, raw: torch.Tensor, *, train: bool,
                 generator: Optional[torch.Generator] = None, share: Share = None
                 ) -> torch.Tensor:
        """Model inputs (CPU float32) for a batch of stored examples (or a `share` of one)."""
        if raw.dtype != torch.uint8:  # vectors (toy sets)
            return raw.float()
        if train and self.flip:
            raw = random_flip(raw, generator, share)
        return scale_images(raw, centered=self.centered, dequantize=self.dequantize,
                            generator=generator, share=share)

    def images(self, raw: torch.Tensor, *, dequantize: bool = False,
               generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """uint8 images in the model's range, without augmentation (eval, tasks)."""
        return scale_images(raw, centered=self.centered, dequantize=dequantize,
                            generator=generator)

    def to_uint8(self, x: torch.Tensor) -> torch.Tensor:
        """Model-range images `[B, C, H, W]` → uint8 (clamped, rounded)."""
        return to_uint8_images(x, centered=self.centered)


def build_transform(data_config) -> DataTransform:
    """The `DataTransform` of a `config.data` section."""
    return DataTransform(centered=bool(data_config.centered),
                         dequantize=bool(data_config.get("uniform_dequantization", False)),
                         flip=bool(data_config.get("random_flip", False)))
