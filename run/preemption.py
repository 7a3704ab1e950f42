"""Stopping a run cleanly when it is asked to: SIGTERM (what SLURM and Kubernetes send before
preemption), SIGINT (Ctrl-C) and SIGUSR1.

The first signal only sets a flag; the run finishes its current step (or batch), writes what
it needs to resume, and raises `Preempted`, which `main.py` turns into a one-line message and
exit status `EXIT_PREEMPTED`. A second SIGINT aborts at once (KeyboardInterrupt). Under torchrun
`should_stop` agrees across ranks (a MAX all-reduce), so every rank stops at the same step.
"""
from __future__ import annotations

import signal
from typing import Optional

import torch

from run.distributed import DistInfo

EXIT_PREEMPTED = 3
SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)


class Preempted(RuntimeError):
    """The run stopped on a signal after saving its progress; rerunning resumes it."""


class StopRequest:
    """`with StopRequest() as stop:` installs the handlers; `stop.requested` names the first
    signal received (None before any)."""

    def __init__(self):
        self.requested: Optional[str] = None
        self._previous = {}

    def _handle(self, signum, frame) -> None:
        if self.requested is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt   # a second Ctrl-C: stop now
        if self.requested is None:
            self.requested = signal.Signals(signum).name

    def __enter__(self) -> "StopRequest":
        for sig in SIGNALS:
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:   # not the main thread: signals stay with their owner
                pass
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def should_stop(self, info: Optional[DistInfo] = None) -> bool:
        """Whether to stop now: this process was signalled, or (under torchrun) any rank was."""
        local = self.requested is not None
        if info is None or info.world_size == 1:
            return local
        import torch.distributed as dist
        flag = torch.tensor([1.0 if local else 0.0],
                            device=info.device if info.device.type == "cuda" else "cpu")
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())


class NoStop:
    """Stands in for a `StopRequest` where nothing installs signal handlers (library use)."""
    requested = None

    def should_stop(self, info: Optional[DistInfo] = None) -> bool:
        return False


class StopChecked:
    """A score function that raises `Preempted` at its next evaluation once `stop` has been
    requested (this process's flag; no collective, so ranks never wait on each other inside a
    step). Every sampler step evaluates the score, so a signal is honoured within one step,
    however long the sampler's loops (corrector iterations, adaptive solvers); the batch in
    progress is dropped, finished ones are kept by the caller.

    The optional capabilities of `sde_lib.score_fn` are passed through: evaluating ones
    (`forward_with_variance`) are checked as calls are, `select_rows` views are wrapped too."""

    def __init__(self, score_fn, stop, context: str = ""):
        self._score_fn, self._stop, self._context = score_fn, stop, context

    def _check(self) -> None:
        if self._stop.requested is not None:
            raise Preempted(f"{self._stop.requested} during a sampler step{self._context}; "
                            f"rerun the same command to continue")

    def __call__(self, *args, **kwargs):
        self._check()
        return self._score_fn(*args, **kwargs)

    def __getattr__(self, name: str):
        value = getattr(self._score_fn, name)
        if name == "forward_with_variance" and callable(value):
            def checked(*args, **kwargs):
                self._check()
                return value(*args, **kwargs)
            return checked
        if name == "select_rows" and callable(value):
            return lambda index: StopChecked(value(index), self._stop, self._context)
        return value


def stop_checked(score_fn, stop, context: str = ""):
    """`score_fn` checked against `stop` at every evaluation (`StopChecked`); itself when
    nothing can request a stop."""
    if stop is None or isinstance(stop, NoStop):
        return score_fn
    return StopChecked(score_fn, stop, context)
