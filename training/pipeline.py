"""From stored examples to model inputs: batch order, flips, dequantization and scaling.

Images: uint8 v ∈ {0, …, 255} → [0, 1] as (v + u)/256 with u ~ U[0, 1) under uniform
dequantization, else v/255; then [-1, 1] when `centered`. Vectors pass through unchanged.
The batch order is a pure function of (seed, step), so a resumed run sees the same batches.
"""
from __future__ import annotations

from typing import Optional

import torch


class BatchOrder:
    """Shuffled batches without replacement, epoch after epoch; `indices(step)` is deterministic.

    With `world_size` > 1 each rank takes its contiguous slice of the global batch.
    """

    def __init__(self, num_examples: int, batch_size: int, seed: int, shuffle: bool = True,
                 rank: int = 0, world_size: int = 1):
        if batch_size > num_examples:
            raise ValueError(f"batch_size={batch_size} exceeds the {num_examples} examples of the data set")
        self.num_examples, self.batch_size, self.seed, self.shuffle = num_examples, batch_size, seed, shuffle
        self.rank, self.world_size = rank, world_size
        self.batches_per_epoch = num_examples // batch_size
        self._epoch, self._perm = None, None

    def _permutation(self, epoch: int) -> torch.Tensor:
        if self._epoch != epoch:
            if self.shuffle:
                gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
                self._perm = torch.randperm(self.num_examples, generator=gen)
            else:
                self._perm = torch.arange(self.num_examples)
            self._epoch = epoch
        return self._perm

    def indices(self, step: int) -> torch.Tensor:
        """Indices `[batch_size // world_size]` of this rank's share of global batch `step`."""
        epoch, position = divmod(step, self.batches_per_epoch)
        batch = self._permutation(epoch)[position * self.batch_size:(position + 1) * self.batch_size]
        share = self.batch_size // self.world_size
        return batch[self.rank * share:(self.rank + 1) * share]


def scale_images(raw: torch.Tensor, *, centered: bool, dequantize: bool,
                 generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """uint8 `[B, C, H, W]` → float32 in [0, 1] (or [-1, 1] when `centered`)."""
    x = raw.float()
    if dequantize:
        x = (x + torch.rand(x.shape, generator=generator)) / 256.0
    else:
        x = x / 255.0
    return 2 * x - 1 if centered else x


def to_uint8_images(x: torch.Tensor, *, centered: bool) -> torch.Tensor:
    """Inverse of `scale_images` for model outputs: clamp to the data range, round to uint8."""
    x = (x + 1) / 2 if centered else x
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


def random_flip(x: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Mirror each image left-right with probability ½."""
    flip = torch.rand(x.shape[0], generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def prepare_batch(raw: torch.Tensor, data_config, *, train: bool,
                  generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Model inputs for a batch of stored examples, as `config.data` asks (CPU float32)."""
    if raw.dtype != torch.uint8:  # vectors (toy sets)
        return raw.float()
    if train and data_config.get("random_flip", False):
        raw = random_flip(raw, generator)
    return scale_images(raw, centered=data_config.centered,
                        dequantize=data_config.get("uniform_dequantization", False), generator=generator)
