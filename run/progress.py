"""Resumable progress of long evaluations and sample runs: finished batches kept per rank, so a
rerun with the same settings continues where a kill or a signal stopped it.

A progress file holds the `key` it belongs to (the checkpoint and every setting that changes
the result) beside the finished batches; a rerun whose key differs starts afresh, so results
of different settings never mix. The file is written atomically after every batch and removed
when the run's results are written (`finish`).
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

import torch

from run.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


def batches(num_examples: int, batch_size: int) -> List[Tuple[int, int]]:
    """(start, stop) of each batch of `batch_size` over `num_examples` examples."""
    return [(i, min(i + batch_size, num_examples)) for i in range(0, num_examples, batch_size)]


def settings_digest(settings: Mapping[str, Any]) -> str:
    """A short digest of plain settings (JSON, sorted keys): names a result by what made it."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def weights_digest(module: torch.nn.Module) -> str:
    """A digest of a model's parameters and buffers: identifies the checkpoint that was used."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        data = tensor.detach().cpu().contiguous()
        digest.update(str(data.dtype).encode() + str(tuple(data.shape)).encode())
        if data.numel():
            digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


class Progress:
    """Finished batches of one run at `path`: `done[name]` holds one entry per finished batch for
    each of `names`, valid for `key` only."""

    def __init__(self, path: Path, key: Mapping[str, Any], names: Iterable[str],
                 root: Optional[Path] = None):
        self.path, self.root = Path(path), root
        self.key = json.loads(json.dumps(dict(key), default=str))
        self.done: Dict[str, Any] = {"key": self.key, **{name: [] for name in names}}
        if self.path.exists():
            try:
                stored = load_checkpoint(self.path)
            except CheckpointError as err:
                logging.warning("starting afresh: %s", err)
                return
            if stored.get("key") == self.key:
                self.done = stored
            else:
                logging.info("%s belongs to other settings; starting afresh", self.path)

    def __len__(self) -> int:
        """The number of finished batches."""
        names = [k for k in self.done if k != "key"]
        return len(self.done[names[0]]) if names else 0

    def append(self, **results) -> None:
        """Record one finished batch (one value per name) and write the file."""
        for name, value in results.items():
            self.done[name].append(value)
        save_checkpoint(self.path, self.done, root=self.root)

    def finish(self) -> None:
        """Remove the file: the run's results are written."""
        self.path.unlink(missing_ok=True)
