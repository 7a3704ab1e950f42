"""The score-function protocol that samplers, likelihoods and losses take.

A score function maps x `[B, ...]` and times t `[B]` (in [0, T]) to an estimate of
∇ₓ log p_t(x), shaped like x. Class-conditional models also take labels y `[B]`
(`ConditionalScoreFn`); the training losses pass them on.

A score function may offer optional capabilities, discovered once where it is wrapped
(`samplers.common.CountedScore`), never probed inside a sampler's loop:
- `forward_with_variance(x, t) -> (score, v)`: the learned reverse-variance interpolation v
  (Nichol & Dhariwal 2021, eq. 15), None for a model without one;
- `learn_variance: bool`: whether that v exists (a model may have the method but no v);
- `select_rows(index) -> ScoreFn`: the score for a batch made of rows `index` of this one,
  for score functions that carry per-sample conditioning (guidance labels);
- `chain_time(index) -> t`: the time at which the model is evaluated for step `index` of the
  SDE's discrete (DDPM) chain.
`models.ScoreModel` offers all four; `models.analytic.GaussianMixture.score_fn` none.
"""
from __future__ import annotations

from typing import Callable, Protocol

import torch


class ScoreFn(Protocol):
    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """∇ₓ log p_t(x) `[B, ...]` for x `[B, ...]` and t `[B]`."""


ConditionalScoreFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
