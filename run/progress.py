"""Resumable evaluation progress: finished batches kept per rank, so a rerun continues.

An evaluation over many batches (bits/dim by the probability-flow ODE, DDPM's bound) appends
each finished batch's results to `<eval>/<name>_progress_<rank>of<world>.pth` (atomically);
a rerun for the same checkpoint step starts at the first unfinished batch.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Iterable, List, Tuple

from run.checkpoint import load_checkpoint, save_checkpoint
from run.distributed import DistInfo
from run.paths import WorkdirPaths


def batches(num_examples: int, batch_size: int) -> List[Tuple[int, int]]:
    """(start, stop) of each batch of `batch_size` over `num_examples` examples."""
    return [(i, min(i + batch_size, num_examples)) for i in range(0, num_examples, batch_size)]


class Progress:
    """This rank's finished batches of evaluation `name` at checkpoint `step`: `done[key]` holds
    one entry per finished batch for each of `keys`."""

    def __init__(self, paths: WorkdirPaths, name: str, info: DistInfo, step: int,
                 keys: Iterable[str]):
        self.path: Path = paths.progress(name, info.rank, info.world_size)
        self.done: Dict = {"step": step, **{key: [] for key in keys}}
        if self.path.exists():
            stored = load_checkpoint(self.path)
            if stored.get("step") == step:
                self.done = stored

    def __len__(self) -> int:
        """The number of finished batches."""
        keys = [k for k in self.done if k != "step"]
        return len(self.done[keys[0]]) if keys else 0

    def append(self, **results) -> None:
        """Record one finished batch (one value per key) and write the file."""
        for key, value in results.items():
            self.done[key].append(value)
        save_checkpoint(self.path, self.done)
