"""The order in which training sees its examples: a pure function of (seed, step), so a
resumed run sees the same batches as an uninterrupted one."""
from __future__ import annotations

import torch


class BatchOrder:
    """Shuffled batches without replacement, epoch after epoch; `indices(step)` is deterministic.

    With `world_size` > 1 each rank takes its contiguous slice of the global batch.
    """

    def __init__(self, num_examples: int, batch_size: int, seed: int, shuffle: bool = True,
                 rank: int = 0, world_size: int = 1):
        if batch_size > num_examples:
            raise ValueError(f"batch_size={batch_size} exceeds the {num_examples} examples of the "
                             f"data set")
        self.num_examples, self.batch_size, self.seed = num_examples, batch_size, seed
        self.shuffle, self.rank, self.world_size = shuffle, rank, world_size
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
        start = position * self.batch_size
        batch = self._permutation(epoch)[start:start + self.batch_size]
        share = self.batch_size // self.world_size
        return batch[self.rank * share:(self.rank + 1) * share]

    def position(self, step: int) -> dict:
        """Where global batch `step` lies: its epoch and batch within it, with what fixes the
        order (stored with checkpoints; resuming at `step` continues from there)."""
        epoch, batch = divmod(step, self.batches_per_epoch)
        return {"step": step, "epoch": epoch, "batch": batch, "seed": self.seed,
                "num_examples": self.num_examples, "batch_size": self.batch_size}
