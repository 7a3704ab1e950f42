"""The row driver of the per-sample adaptive solvers, written once.

`adaptive_sde`, `dpm_adaptive` and the likelihood's adaptive DPM-Solver each give every sample its
own step size, so samples finish apart. They run tries in rounds on the rows still running; after
each round one host read says which rows are done, those rows are written out and dropped from
the batch (so later rounds evaluate the score on fewer rows), until none is left.
"""
from __future__ import annotations

from typing import Callable, List, Tuple, TypeVar

import torch

State = TypeVar("State")


def drive_rows(state: State, batch: int, device, *,
               run_round: Callable[[State, List[int], int], Tuple[State, int]],
               sync: Callable[[State], torch.Tensor],
               write: Callable[[torch.Tensor, State, torch.Tensor], None],
               compact: Callable[[State, torch.Tensor], State],
               max_steps: int, unfinished: Callable[[int], str]) -> int:
    """Run rounds until every one of the `batch` rows is done; returns the number of tries.

    run_round(state, active, tries) -> (state, tries): one round of tries on the rows `active`
        (indices into the batch), `tries` counted so far.
    sync(state) -> done: bool `[b]` on the CPU, the round's one host read (it raises on failure).
    write(rows, state, done): store the finished rows `rows` (batch indices, on `device`), whose
        states are `state`'s where `done` (on `device`).
    compact(state, keep): the state of the rows `keep` (on `device`) only.
    Raises RuntimeError(`unfinished(number of rows left)`) after `max_steps` tries.
    """
    active, tries = list(range(batch)), 0
    while active:
        if tries >= max_steps:
            raise RuntimeError(unfinished(len(active)))
        state, tries = run_round(state, active, tries)
        done = sync(state)
        if bool(done.any()):
            on_device = done.to(device)
            write(torch.tensor(active, device=device)[on_device], state, on_device)
            keep = (~done).nonzero().flatten()
            active = [active[i] for i in keep.tolist()]
            state = compact(state, keep.to(device))
    return tries
