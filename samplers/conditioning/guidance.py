"""Guidance: class-conditional score functions that any sampler can run.

A class-conditional score takes labels: `cond_score_fn(x, t, y)` with `y` an integer tensor `[B]`,
where the *null label* (usually `num_classes`) means "no class", the unconditional score (label
dropout; Ho & Salimans 2022). The wrappers here return a plain `score_fn(x, t)`:

- `classifier_free_guidance`: s = s(x, t, ∅) + γ·(s(x, t, y) − s(x, t, ∅)), the score of
  p_t(x)^{1−γ}·p_t(x | y)^γ (up to normalisation). Ho & Salimans write it with
  ε̃ = (1 + w)·ε(x, y) − w·ε(x), so γ = 1 + w: γ = 0 is unconditional, γ = 1 (w = 0) conditional.
- `classifier_guidance`: s = s(x, t) + γ·∇ₓ log p_t(y | x) (Dhariwal & Nichol 2021, their scale
  s = γ), the score of p_t(x)·p_t(y | x)^γ; γ = 1 is exactly ∇ₓ log p_t(x | y) (Bayes).

Labels are per row, and follow the rows: samplers that evaluate a subset of their batch
(`adaptive_sde` drops finished samples) narrow the score with `samplers.common.select_rows`,
which these wrappers implement. A single int label applies to every row of any batch.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence, Union

import torch

from samplers.common import ScoreFn, select_rows

CondScoreFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
LogProbFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Labels = Union[int, torch.Tensor]


def check_scale(scale) -> float:
    """A finite guidance scale γ (any sign: γ < 0 guides away from the class)."""
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale):
        raise ValueError(f"scale must be a finite number, got {scale!r}")
    return float(scale)


def check_labels(y: Labels, upper: float) -> torch.Tensor:
    """An int or an integer tensor `[B]` of labels in [0, upper], as an int64 tensor."""
    if isinstance(y, int) and not isinstance(y, bool):
        y = torch.tensor(y)
    if not isinstance(y, torch.Tensor) or y.dtype not in (torch.int32, torch.int64) \
            or y.ndim > 1 or (y.numel() and not bool(((y >= 0) & (y <= upper)).all())):
        raise ValueError(f"y must be an int or an integer tensor [B] of labels in [0, {upper}], "
                         f"got {y!r}")
    return y.long()


class RowLabels:
    """Labels `[B]` of a batch (or a 0-d tensor: one label for every row) that follow the rows."""

    def __init__(self, y: torch.Tensor):
        self.y = y

    def for_batch(self, x: torch.Tensor) -> torch.Tensor:
        """The labels `[b]` of x's rows, on x's device."""
        if self.y.ndim == 0:
            return self.y.to(x.device).expand(x.shape[0])
        if self.y.shape[0] != x.shape[0]:
            raise ValueError(f"the labels are for a batch of {self.y.shape[0]} but the score was "
                             f"called on {x.shape[0]} rows; a sampler evaluating a subset of its "
                             f"rows must narrow the score with samplers.common.select_rows")
        return self.y.to(x.device)

    def select(self, index: Sequence[int]) -> "RowLabels":
        """The labels of the rows `index`."""
        if self.y.ndim == 0:
            return self
        return RowLabels(self.y[torch.as_tensor(index, dtype=torch.long, device=self.y.device)])


class ClassifierFreeGuidance:
    """The guided score of `classifier_free_guidance`: a `score_fn(x, t)` with `select_rows`."""

    def __init__(self, cond_score_fn: CondScoreFn, labels: RowLabels, scale: float,
                 null_label: int):
        self.cond_score_fn, self.labels = cond_score_fn, labels
        self.scale, self.null_label = scale, null_label

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        y = self.labels.for_batch(x)
        null = torch.full_like(y, self.null_label)
        if self.scale == 0:                                   # unconditional: one evaluation
            return self.cond_score_fn(x, t, null)
        if self.scale == 1:                                   # conditional: one evaluation
            return self.cond_score_fn(x, t, y)
        # One evaluation on the stacked batch [conditional; null] `[2b, ...]`.
        both = self.cond_score_fn(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, null]))
        conditional, unconditional = both.chunk(2)
        return unconditional + self.scale * (conditional - unconditional)

    def select_rows(self, index: Sequence[int]) -> "ClassifierFreeGuidance":
        return ClassifierFreeGuidance(self.cond_score_fn, self.labels.select(index), self.scale,
                                      self.null_label)


def classifier_free_guidance(cond_score_fn: CondScoreFn, y: Labels, scale: float,
                             null_label: int) -> ScoreFn:
    """score_fn(x, t) = s(x, t, ∅) + γ·(s(x, t, y) − s(x, t, ∅)) (Ho & Salimans 2022, γ = 1 + w).

    Args:
        cond_score_fn: `(x, t, y) -> score` shaped like x, y an integer tensor `[B]`.
        y: the labels of the batch `[B]` (values in [0, null_label]) or one int for all rows.
        scale: γ; 0 and 1 cost one evaluation, any other value one evaluation of a batch of 2B.
        null_label: the label meaning "no class" (a conditional ScoreModel's `null_label`).
    """
    if isinstance(null_label, bool) or not isinstance(null_label, int) or null_label < 0:
        raise ValueError(f"null_label must be an integer >= 0, got {null_label!r}")
    labels = RowLabels(check_labels(y, null_label))
    return ClassifierFreeGuidance(cond_score_fn, labels, check_scale(scale), null_label)


def classifier_gradient(log_prob_fn: LogProbFn, x: torch.Tensor, t: torch.Tensor,
                        y: torch.Tensor) -> torch.Tensor:
    """∇ₓ log p_t(y | x) `[B, ...]` from log-probabilities `log_prob_fn(x, t)` `[B, K]`.

    Autograd runs inside `torch.enable_grad()`, so this works under `no_grad`. If x is itself
    part of a graph (a likelihood's divergence), the gradient is taken with `create_graph`,
    so that its own derivative (the classifier's Hessian) reaches the divergence.
    """
    in_graph = torch.is_grad_enabled() and x.requires_grad
    with torch.enable_grad():
        x_in = x if in_graph else x.detach().requires_grad_(True)
        log_prob = log_prob_fn(x_in, t)
        if log_prob.ndim != 2 or log_prob.shape[0] != x.shape[0]:
            raise ValueError(f"log_prob_fn must return [B, K] = [{x.shape[0]}, K] "
                             f"log-probabilities, got {tuple(log_prob.shape)}")
        selected = log_prob.gather(1, y[:, None]).sum()
        gradient, = torch.autograd.grad(selected, x_in, create_graph=in_graph)
    return gradient


class ClassifierGuidance:
    """The guided score of `classifier_guidance`: a `score_fn(x, t)` with `select_rows`."""

    def __init__(self, score_fn: ScoreFn, log_prob_fn: LogProbFn, labels: RowLabels,
                 scale: float):
        self.score_fn, self.log_prob_fn = score_fn, log_prob_fn
        self.labels, self.scale = labels, scale

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        score = self.score_fn(x, t)
        if self.scale == 0:                                   # no classifier evaluation
            return score
        gradient = classifier_gradient(self.log_prob_fn, x, t, self.labels.for_batch(x))
        return score + self.scale * gradient.to(score.dtype)

    def select_rows(self, index: Sequence[int]) -> "ClassifierGuidance":
        return ClassifierGuidance(select_rows(self.score_fn, index), self.log_prob_fn,
                                  self.labels.select(index), self.scale)


def classifier_guidance(score_fn: ScoreFn, log_prob_fn: LogProbFn, y: Labels,
                        scale: float) -> ScoreFn:
    """score_fn(x, t) = s(x, t) + γ·∇ₓ log p_t(y | x) (Dhariwal & Nichol 2021, Alg. 1).

    Args:
        score_fn: the unconditional score (it may itself carry per-row conditioning).
        log_prob_fn: `(x, t) -> [B, K]` log class-probabilities of a noisy-data classifier.
        y: the labels `[B]` (values in [0, K)) or one int for all rows.
        scale: γ; γ = 0 returns s(x, t) without evaluating the classifier.
    """
    labels = RowLabels(check_labels(y, math.inf))
    return ClassifierGuidance(score_fn, log_prob_fn, labels, check_scale(scale))
