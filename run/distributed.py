"""More than one process: torchrun detection, process group, and small collectives.

Launched as `torchrun --nproc_per_node=N main.py ...`, each process sees RANK, WORLD_SIZE and
LOCAL_RANK; one plain process is world size 1 and needs no process group. Each worker watches
the launcher that started it: when the launcher dies (killed alone, e.g. `kill -9`), the worker
sends itself SIGTERM, so the job ends as a preempted run does (a preemption checkpoint, exit 3)
and rank 0's workdir lock is released, instead of workers training on without a launcher.
"""
from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any, List, Optional

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job: rank, world size and the device it computes on."""
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Only the main process writes checkpoints, TensorBoard events and images."""
        return self.rank == 0

    @property
    def shard(self) -> tuple:
        return self.rank, self.world_size


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def default_device() -> torch.device:
    """CUDA when available, else the CPU (never stored in a config)."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def single_process(device=None) -> DistInfo:
    """The `DistInfo` of a plain process on `device` (default: `default_device()`)."""
    return DistInfo(device=torch.device(device) if device is not None else default_device())


def init_distributed(device: Optional[torch.device] = None) -> DistInfo:
    """Initialise the process group under torchrun (nccl on CUDA, gloo on CPU), else no-op.
    `device` (`--device`): None picks CUDA when available; a CUDA device without an index means
    "the GPU of this process" (under torchrun, its local rank's)."""
    if not launched_by_torchrun():
        if device is not None and device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        return single_process(device)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if (torch.cuda.is_available() if device is None else device.type == "cuda"):
        torch.cuda.set_device(local_rank)
        device, backend = torch.device("cuda", local_rank), "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
    watch_launcher()
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, device)


def watch_launcher(period: float = 0.5) -> threading.Thread:
    """A daemon thread that sends this process SIGTERM once its parent (the launcher) is gone:
    an orphan is re-parented, so its parent PID changes (Linux and macOS alike)."""
    launcher = os.getppid()

    def watch() -> None:
        while os.getppid() == launcher:
            time.sleep(period)
        os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=watch, name="watch-launcher", daemon=True)
    thread.start()
    return thread


def barrier(info: DistInfo) -> None:
    if info.world_size > 1:
        dist.barrier()


def all_gather_objects(info: DistInfo, obj: Any) -> List[Any]:
    """Every rank's `obj`, in rank order (a list of one without a process group)."""
    if info.world_size == 1:
        return [obj]
    gathered: List[Any] = [None] * info.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def all_reduce_mean(info: DistInfo, x: torch.Tensor) -> torch.Tensor:
    """The mean of `x` over ranks (`x` itself for one process)."""
    if info.world_size == 1:
        return x
    x = x.detach().clone()
    dist.all_reduce(x)
    return x / info.world_size


def gather_cat(info: DistInfo, x: torch.Tensor) -> torch.Tensor:
    """Every rank's `x` `[n, ...]` concatenated in rank order (`x` itself for one process)."""
    if info.world_size == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(info.world_size)]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


def shutdown(info: DistInfo) -> None:
    if info.world_size > 1 and dist.is_initialized():
        dist.destroy_process_group()
