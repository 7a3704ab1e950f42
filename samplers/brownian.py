"""Per-sample Brownian paths revealed lazily, consistent when an adaptive solver rejects a step.

An adaptive SDE solver that redraws the noise after a rejected step keeps only noise that passed
its error test, so accepted increments are no longer N(0, h·I) and the solution's law is biased
at every tolerance (Rackauckas & Nie 2017, "Adaptive methods for SDEs ... RSwM", Sec. 2). Here
each sample's path W is fixed once revealed: a rejected try's increment stays part of the path,
and a shorter try samples the Brownian bridge inside it (Rackauckas & Nie 2017, eq. 4):
    W(s) | W(0) = 0, W(τ) = w  ~  N((s/τ)·w, s(τ − s)/τ·I),   0 < s ≤ τ.
The known intervals ahead of the current time form a per-sample stack (top: the interval that
starts at the current time); a try never spans past the top interval, so every revealed value is
drawn from its exact conditional law given everything revealed so far, and the path is Brownian
whatever the solver's accept/reject decisions. All operations are tensor ops on `[b]` rows
(no host synchronisation); a push beyond `max_depth` sets `overflow` for the caller to check.
"""
from __future__ import annotations

from typing import NamedTuple, Tuple

import torch

from sde_lib import append_dims


class BrownianStack(NamedTuple):
    """Known future intervals of each sample's path; rows are samples, slots `< depth` are live."""
    dt: torch.Tensor        # [b, D] float64 interval lengths (reverse time), top at slot depth − 1
    dw: torch.Tensor        # [b, D, ...] their increments, typed like x
    depth: torch.Tensor     # [b] int64
    overflow: torch.Tensor  # [b] bool: a push found the stack full


def empty_stack(x: torch.Tensor, max_depth: int) -> BrownianStack:
    """A stack of `max_depth` slots for each sample of `x` `[b, ...]`, with nothing known yet."""
    batch = x.shape[0]
    return BrownianStack(torch.zeros(batch, max_depth, dtype=torch.float64, device=x.device),
                         x.new_zeros((batch, max_depth) + tuple(x.shape[1:])),
                         torch.zeros(batch, dtype=torch.int64, device=x.device),
                         torch.zeros(batch, dtype=torch.bool, device=x.device))


def _top(stack: BrownianStack):
    rows = torch.arange(stack.depth.shape[0], device=stack.depth.device)
    slot = (stack.depth - 1).clamp(min=0)
    return rows, slot, stack.depth > 0


def reveal(stack: BrownianStack, h: torch.Tensor, noise: torch.Tensor
           ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Step sizes clamped to the top interval, the increments W over them, and where h = the top.

    `h` `[b]` float64 > 0 (0 for finished samples), `noise` ~ N(0, I) shaped like x.
    Returns (h `[b]`, dW shaped like x, full `[b]` bool).
    """
    rows, slot, known = _top(stack)
    top_dt = torch.where(known, stack.dt[rows, slot], torch.ones_like(h))
    h = torch.where(known, torch.minimum(h, top_dt), h)
    full = known & (h >= top_dt)
    fraction = h / top_dt
    bridge_mean = append_dims(fraction.to(noise.dtype), noise.ndim) * stack.dw[rows, slot]
    std = torch.where(known, (h * (1 - fraction)).clamp(min=0), h).sqrt()
    mean = torch.where(append_dims(known, noise.ndim), bridge_mean, torch.zeros_like(noise))
    return h, mean + append_dims(std.to(noise.dtype), noise.ndim) * noise, full


def settle(stack: BrownianStack, h: torch.Tensor, dw: torch.Tensor, full: torch.Tensor,
           accept: torch.Tensor) -> BrownianStack:
    """After a try over [t − h, t] with increment `dw`: consume it if accepted, else keep it."""
    rows, slot, known = _top(stack)
    dt, increments, depth = stack.dt, stack.dw, stack.depth   # in place: the caller owns them
    # The top interval loses its first h: what is left of it starts at t − h.
    dt[rows, slot] = torch.where(known, dt[rows, slot] - h, dt[rows, slot])
    mask = append_dims(known, dw.ndim)
    increments[rows, slot] = torch.where(mask, increments[rows, slot] - dw, increments[rows, slot])
    # A try over the whole top interval used it up, accepted or not.
    depth = depth - full.long()
    # A rejected try's interval becomes the new top, above what is left of the old one.
    push = ~accept
    capacity = dt.shape[1]
    overflow = stack.overflow | (push & (depth >= capacity))
    slot = depth.clamp(max=capacity - 1)
    dt[rows, slot] = torch.where(push, h, dt[rows, slot])
    increments[rows, slot] = torch.where(append_dims(push, dw.ndim), dw, increments[rows, slot])
    return BrownianStack(dt, increments, depth + push.long(), overflow)
