"""What the training loop keeps of its steps between two looks from the host: sums for the
logged means and the non-finite bookkeeping of `training.nan_policy`, all device tensors, so
that a step costs no host synchronisation; `read` turns them into numbers (one synchronisation)
and enforces the policy."""
from __future__ import annotations

from typing import Dict

import torch

from training.step import StepResult


class NonFiniteLossError(RuntimeError):
    """The loss, its gradient or the parameters stopped being finite."""


class StepMonitor:
    """Device-side sums and flags since the last `read` (and skip counts since the start)."""

    def __init__(self, device, nan_policy: str = "stop", nan_skip_limit: int = 10):
        zeros = lambda dtype: torch.zeros((), dtype=dtype, device=device)  # noqa: E731
        self.nan_policy, self.nan_skip_limit = nan_policy, nan_skip_limit
        self.loss_sum, self.grad_sum = zeros(torch.float64), zeros(torch.float64)
        self.count = 0
        self.skipped, self.run, self.longest_run = (zeros(torch.int64) for _ in range(3))
        self.first_bad = torch.full((), -1, dtype=torch.int64, device=device)
        self.params_bad_step = torch.full((), -1, dtype=torch.int64, device=device)
        self.last_loss = zeros(torch.float32)
        self._skipped_before = 0.0   # `skipped` at the last read

    def observe(self, result: StepResult, step: int) -> None:
        """Record step `step`'s result (no synchronisation)."""
        bad = result.non_finite
        zero = torch.zeros((), dtype=torch.float64, device=bad.device)
        self.loss_sum += torch.where(bad, zero, result.loss.double())
        self.grad_sum += torch.where(bad, zero, result.grad_norm.double())
        self.count += 1
        self.last_loss = result.loss
        self.skipped += bad.long()
        self.run = (self.run + 1) * bad.long()
        self.longest_run = torch.maximum(self.longest_run, self.run)
        self.first_bad = torch.where((self.first_bad < 0) & bad, step, self.first_bad)
        params_bad = ~result.params_finite
        self.params_bad_step = torch.where((self.params_bad_step < 0) & params_bad, step,
                                           self.params_bad_step)

    def read(self) -> Dict[str, float]:
        """The means since the last read, and the policy's verdict (raises
        `NonFiniteLossError`); resets the sums."""
        values = torch.stack([self.loss_sum, self.grad_sum, self.skipped.double(),
                              self.longest_run.double(), self.first_bad.double(),
                              self.params_bad_step.double(), self.last_loss.double()]).tolist()
        loss_sum, grad_sum, skipped, longest, first_bad, params_bad, last = values
        if params_bad >= 0:
            raise NonFiniteLossError(
                f"the parameters became non-finite after the optimizer step at step "
                f"{int(params_bad)} (learning rate too high?); stopping without saving them "
                f"(the last checkpoint is intact)")
        if first_bad >= 0 and self.nan_policy == "stop":
            raise NonFiniteLossError(
                f"non-finite loss or gradient norm at step {int(first_bad)}; the parameters were "
                f"not updated; stopping (the last checkpoint is intact; set "
                f"config.training.nan_policy=skip to skip such batches)")
        if longest >= self.nan_skip_limit:
            raise NonFiniteLossError(
                f"{int(longest)} non-finite batches in a row ({int(skipped)} skipped in this "
                f"run); stopping (the last checkpoint is intact; lower config.optim.lr)")
        good = self.count - (skipped - self._skipped_before)
        self._skipped_before = skipped
        means = {"loss": loss_sum / good if good else last,
                 "grad_norm": grad_sum / good if good else float("nan"),
                 "skipped_non_finite": skipped}
        self.loss_sum.zero_()
        self.grad_sum.zero_()
        self.count = 0
        return means
