"""Torch's CPU threads per process.

Torch starts as many intra-op threads as the machine has cores, in every process: under
torchrun, or beside other busy processes, the threads then outnumber the cores and spin
against each other (the digits default ran at 1 step/s on a busy 2-core machine, 11–16 with one
thread per process). The default here: the cores this process may use, divided among the
processes of the job on this node, less the cores other work keeps busy (the 1-minute load
average), and at least one. `--threads N` or OMP_NUM_THREADS override it.
"""
from __future__ import annotations

import os


def default_threads() -> int:
    """Threads for this process (see the module docstring)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    share = max(1, (cores or 1) // max(local_processes, 1))
    busy = int(os.getloadavg()[0]) if hasattr(os, "getloadavg") else 0
    return max(1, min(share, (cores or 1) - busy))


def set_threads(requested: int) -> int:
    """Set torch's intra-op threads: `requested` if > 0, else OMP_NUM_THREADS if set, else
    `default_threads()`. Returns the number set."""
    import torch

    if requested > 0:
        count = requested
    elif os.environ.get("OMP_NUM_THREADS", "").isdigit():
        count = int(os.environ["OMP_NUM_THREADS"])
    else:
        count = default_threads()
    torch.set_num_threads(max(1, count))
    return torch.get_num_threads()
