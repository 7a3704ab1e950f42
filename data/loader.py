"""Training batches through a `torch.utils.data.DataLoader`: each step's share of this rank, in
the order of `BatchOrder`, read (decoded, resized, cropped) in worker processes.

The order is a function of (seed, step) only, so a run resumed at step s reads exactly the
batches an uninterrupted run reads from s on; the workers only read, so the batches do not
depend on their number. Each rank reads its own rows of every global batch (its shard of the
epoch's permutation), never another rank's.
"""
from __future__ import annotations

import logging
import os
import signal
from dataclasses import dataclass
from typing import Iterator, List, Optional, Tuple

import torch
from torch.utils.data import DataLoader, Sampler

from data.errors import DataInputError
from data.images import BadImageError
from data.order import BatchOrder


def default_workers(local_world_size: int = 1) -> int:
    """Loader workers per process: the cores this process may use, less one for its own steps
    (at least one, at most eight)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return max(1, min(8, cores // max(1, local_world_size) - 1))


@dataclass(frozen=True)
class LoaderSettings:
    """`num_workers`: reading processes (0: in this process). The batches stay in pageable
    memory: augmentation makes new tensors from them in the training process, and it is those
    that go to CUDA through pinned memory (`training.train.to_device`)."""
    num_workers: int = 0


class StepSampler(Sampler):
    """This rank's indices of global batches `start` … `stop − 1`, one list per step."""

    def __init__(self, order: BatchOrder, start: int, stop: int):
        self.order, self.start, self.stop = order, start, stop

    def __iter__(self) -> Iterator[List[int]]:
        for step in range(self.start, self.stop):
            yield self.order.indices(step).tolist()

    def __len__(self) -> int:
        return max(0, self.stop - self.start)


@dataclass
class _Failed:
    """A batch that could not be read (its error travels back from the worker as a message)."""
    message: str


class _Examples(torch.utils.data.Dataset):
    """Reads whole batches: (data `[B, ...]`, labels `[B]` or None, files skipped so far)."""

    def __init__(self, data, labels: Optional[torch.Tensor]):
        self.data, self.labels = data, labels

    def __len__(self) -> int:
        return len(self.data)

    def __getitems__(self, indices: List[int]):
        index = torch.tensor(indices, dtype=torch.int64)
        try:
            x = self.data[index]
        except DataInputError as err:
            return _Failed(str(err))
        y = None if self.labels is None else self.labels[index]
        return x, y, sorted(getattr(self.data, "skipped", ()))

    def __getitem__(self, i: int):
        return self.__getitems__([i])


def _as_is(batch):
    return batch


STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def _ignore_signals(worker_id: int) -> None:
    """Workers leave SIGINT / SIGTERM (sent to a whole job by a terminal or a scheduler) to the
    training process, which stops at the end of its step and then ends them; dying on the
    signal would fail that step's next read instead. The workers start with both blocked
    (`_start_workers`), so one sent before this runs is discarded here, not fatal."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def _start_workers(loader: DataLoader):
    """`iter(loader)` with SIGINT / SIGTERM blocked while its workers start: they inherit the
    mask, and the training process receives what arrived meanwhile once it is lifted."""
    if not loader.num_workers:
        return iter(loader)
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        return iter(loader)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class StepBatches:
    """Iterates (data, labels) of steps `start` … `stop − 1` of `order` for a data set's
    `data` / `labels`; `skipped` counts the unreadable files replaced so far."""

    def __init__(self, data, labels, order: BatchOrder, start: int, stop: int,
                 settings: LoaderSettings = LoaderSettings()):
        workers = settings.num_workers
        self.loader = DataLoader(_Examples(data, labels),
                                 batch_sampler=StepSampler(order, start, stop),
                                 num_workers=workers, collate_fn=_as_is,
                                 prefetch_factor=2 if workers else None,
                                 persistent_workers=False, worker_init_fn=_ignore_signals,
                                 # its own generator: the workers' seeds must not draw from the
                                 # global RNG, which dropout uses (resume restores it)
                                 generator=torch.Generator().manual_seed(0))
        self.skipped: set = set()
        self._iterator = None

    def __iter__(self) -> "StepBatches":
        return self

    def __next__(self) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        if self._iterator is None:
            self._iterator = _start_workers(self.loader)
        item = next(self._iterator)
        if isinstance(item, _Failed):
            self.close()
            raise BadImageError(item.message)
        x, y, skipped = item
        self.skipped.update(skipped)
        return x, y

    def close(self) -> None:
        """End the workers (also when the iterator is dropped)."""
        if self._iterator is None:
            return
        if hasattr(self._iterator, "_shutdown_workers"):
            self._iterator._shutdown_workers()
        self._iterator = None
        if self.skipped:
            logging.warning("replaced %d unreadable files by the next readable ones "
                            "(config.data.skip_bad_files)", len(self.skipped))


Batch = Tuple[torch.Tensor, Optional[torch.Tensor]]


def in_memory_batches(data: torch.Tensor, labels: Optional[torch.Tensor], order: BatchOrder,
                      start: int, stop: int) -> Iterator[Batch]:
    """The same (data, labels) as `StepBatches`, indexed from tensors in this process."""
    for step in range(start, stop):
        indices = order.indices(step)
        yield data[indices], None if labels is None else labels[indices]


def build_loader_settings(data_config, local_world_size: int) -> LoaderSettings:
    """`config.data.num_workers` (−1: `default_workers` for `local_world_size` processes on
    this machine)."""
    workers = data_config.get("num_workers", -1)
    return LoaderSettings(default_workers(local_world_size) if workers < 0 else workers)
