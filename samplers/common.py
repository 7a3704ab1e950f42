"""Helpers shared by the samplers: argument checks, the time grid, NFE counting, Tweedie denoising.

Time runs from `sde.T` (prior) down to `eps` (the last time); coefficients are computed in
float64 and cast to the state's dtype where they meet `x`.
"""
from __future__ import annotations

from typing import Callable, Iterable, Optional, Sequence, Union

import torch

from samplers.registry import SampleResult
from sde_lib import SDE, append_dims, randn

ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# Randomness: None (the global RNG), a torch.Generator, or a list of one generator per sample,
# so that sample i gets the same noise in any batch (`sde_lib.randn`).
Generator = Optional[Union[torch.Generator, Sequence[torch.Generator]]]


def check_choice(field: str, value, choices: Iterable[str]) -> None:
    """Raise ValueError naming `field` and the valid `choices` unless `value` is one of them."""
    choices = sorted(choices)
    if value not in choices:
        raise ValueError(f"Unknown {field} {value!r}; expected one of {choices}")


def check_eps(sde: SDE, eps: float) -> float:
    """`eps` must lie in the open interval (0, T)."""
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 < eps < sde.T:
        raise ValueError(f"eps must satisfy 0 < eps < T = {sde.T}, got {eps!r}")
    return float(eps)


def check_num_steps(sde: SDE, num_steps: Optional[int]) -> int:
    """`num_steps` must be an integer >= 1; None means the SDE's own `N`."""
    return sde.N if num_steps is None else check_positive_int("num_steps", num_steps)


def check_positive_int(field: str, value) -> int:
    """An integer >= 1 (n_steps, num_probes)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{field} must be an integer >= 1, got {value!r}")
    return value


def check_positive(field: str, value) -> float:
    """A finite float > 0 (snr, step_lr, rtol, atol, dt)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not 0 < value < float("inf"):
        raise ValueError(f"{field} must be a positive number, got {value!r}")
    return float(value)


def time_grid(sde: SDE, num_steps: int, eps: float, device=None) -> torch.Tensor:
    """`num_steps + 1` decreasing times from T to eps, uniform in t, float64 `[num_steps + 1]`."""
    return torch.linspace(sde.T, eps, num_steps + 1, dtype=torch.float64, device=device)


def select_rows(score_fn: ScoreFn, index: Sequence[int]) -> ScoreFn:
    """`score_fn` for a batch made of the rows `index` of the batch it was built for.

    A score function that carries per-sample conditioning (class labels, `samplers.guidance`)
    defines `select_rows(index) -> ScoreFn`, so that the conditioning follows the rows; for any
    other score function this is the identity. A sampler that evaluates a subset of its rows
    (`adaptive_sde` drops finished samples) calls this, as it selects the generators.
    """
    select = getattr(score_fn, "select_rows", None)
    return score_fn if select is None else select(index)


class CountedScore:
    """Wraps a score_fn, calling it with `t` in `x`'s dtype and counting the calls (`nfe`)."""

    def __init__(self, score_fn: ScoreFn, parent: Optional["CountedScore"] = None):
        self.score_fn = score_fn
        self.nfe = 0
        self.parent = parent

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        counter = self
        while counter is not None:  # a row view counts into the score it was selected from
            counter.nfe += 1
            counter = counter.parent
        return self.score_fn(x, t.to(x.dtype))

    def select_rows(self, index: Sequence[int]) -> "CountedScore":
        """A view on the rows `index` (`select_rows`) whose calls also count here."""
        return CountedScore(select_rows(self.score_fn, index), parent=self)


def coeff(c: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A `[B]` float64 coefficient cast to `x`'s dtype and broadcast against `x` `[B, ...]`."""
    return append_dims(c.to(x.dtype), x.ndim)


def tweedie_denoise(score_fn: ScoreFn, sde: SDE, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """E[x_0 | x_t] = (x_t + σ_t²·∇log p_t(x_t)) / a_t (Tweedie's formula; Efron 2011, eq. 2.8).

    `x` `[B, ...]` at time `t` `[B]` (float64); one score evaluation.
    """
    mean_coeff, std = sde.marginal_coeffs(t)
    score = score_fn(x, t)
    return (x + coeff(std ** 2, x) * score) / coeff(mean_coeff, x)


def sample_noise(x: torch.Tensor, generator: Generator) -> torch.Tensor:
    """Standard normal noise shaped and typed like `x`, from `generator` (one or one per sample)."""
    return randn(x.shape, generator, x.device, x.dtype)


def prior_sample(sde: SDE, shape, generator: Generator, device, dtype,
                 x_T: Optional[torch.Tensor] = None) -> torch.Tensor:
    """x_T from the prior, on `device` (or the generator's device); or a copy of the given `x_T`.

    A given `x_T` must have `shape` `[B, ...]`; it is cast to `dtype` and moved to `device` (if
    given) and replaces the prior draw, so no random number is drawn for it.
    """
    if x_T is None:
        return sde.prior_sampling(shape, generator=generator, device=device, dtype=dtype)
    if not isinstance(x_T, torch.Tensor) or tuple(x_T.shape) != tuple(shape):
        got = tuple(x_T.shape) if isinstance(x_T, torch.Tensor) else type(x_T).__name__
        raise ValueError(f"x_T must be a tensor of shape {tuple(shape)}, got {got}")
    return x_T.to(device=x_T.device if device is None else device, dtype=dtype, copy=True)


def check_callback(callback) -> None:
    """`callback` must be None or callable as callback(step_index, t, x, denoised)."""
    if callback is not None and not callable(callback):
        raise ValueError(f"callback must be None or a callable (step_index, t, x, denoised), "
                         f"got {type(callback).__name__}")


def finish_run(score_fn: ScoreFn, sde: SDE, x: torch.Tensor, times: torch.Tensor,
               denoise: bool, callback, step_index: int) -> SampleResult:
    """The end of a fixed-grid run at times[-1]: the last callback and, with `denoise`, Tweedie."""
    t = times[-1:].to(x.device).expand(x.shape[0])
    denoised = tweedie_denoise(score_fn, sde, x, t) if denoise else None
    if callback is not None:
        callback(step_index, t, x, denoised)
    return SampleResult(x if denoised is None else denoised, score_fn.nfe)
