"""Helpers shared by the samplers: the result types, argument checks, NFE counting, Tweedie's
data prediction.

Time runs from `sde.T` (prior) down to `eps` (the last time); coefficients are computed in
float64 and cast to the state's dtype where they meet `x`.
"""
from __future__ import annotations

from typing import Callable, Iterable, NamedTuple, Optional, Sequence, Tuple, Union

import torch

from sde_lib import SDE, ScoreFn, append_dims, check_int, randn


class SampleResult(NamedTuple):
    """Samples `x` `[B, ...]`, the number of score evaluations `nfe` (per batch, an int) and the
    method's extra results `info` (the adaptive solvers' tries, per-sample NFE, ...)."""
    x: torch.Tensor
    nfe: int
    info: dict = {}


class LikelihoodResult(NamedTuple):
    """log p_eps(x) in nats `[B]`, the end point `z` of the flow, and the score evaluations."""
    logp: torch.Tensor
    z: torch.Tensor
    nfe: int


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
    return sde.N if num_steps is None else check_int("num_steps", num_steps)


def check_positive(field: str, value) -> float:
    """A finite float > 0 (snr, step_lr, rtol, atol, dt)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not 0 < value < float("inf"):
        raise ValueError(f"{field} must be a positive number, got {value!r}")
    return float(value)


class Capabilities(NamedTuple):
    """The optional capabilities of a score function (`sde_lib.score_fn`); None where absent."""
    forward_with_variance: Optional[Callable]
    select_rows: Optional[Callable]
    chain_time: Optional[Callable]


def capabilities(score_fn: ScoreFn) -> Capabilities:
    """Discover `score_fn`'s optional capabilities: the one place that probes a score function.

    `forward_with_variance` counts as absent on a model that declares `learn_variance = False`.
    """
    if isinstance(score_fn, CountedScore):  # its own methods, which count the calls
        inner = score_fn.capabilities
        return Capabilities(score_fn.with_variance if inner.forward_with_variance else None,
                            score_fn.select_rows,
                            score_fn.chain_time if inner.chain_time else None)

    def method(name: str) -> Optional[Callable]:
        found = getattr(score_fn, name, None)
        return found if callable(found) else None

    with_variance = method("forward_with_variance")
    if getattr(score_fn, "learn_variance", True) is False:
        with_variance = None
    return Capabilities(with_variance, method("select_rows"), method("chain_time"))


def select_rows(score_fn: ScoreFn, index: Sequence[int]) -> ScoreFn:
    """`score_fn` for a batch made of the rows `index` of the batch it was built for.

    A score function that carries per-sample conditioning (class labels, `samplers.conditioning.guidance`)
    defines `select_rows(index) -> ScoreFn`, so that the conditioning follows the rows; for any
    other score function this is the identity. A sampler that evaluates a subset of its rows
    (`adaptive_sde` drops finished samples) calls this, as it selects the generators.
    """
    select = capabilities(score_fn).select_rows
    return score_fn if select is None else select(index)


class CountedScore:
    """A score function wrapped once for a sampler: it is called with `t` in `x`'s dtype, its
    calls are counted (`nfe`), and its optional capabilities are discovered here
    (`capabilities`) and offered as methods."""

    def __init__(self, score_fn: ScoreFn, parent: Optional["CountedScore"] = None):
        self.capabilities = capabilities(score_fn)
        self.score_fn = score_fn
        self.nfe = 0
        self.parent = parent

    def _count(self) -> None:
        counter = self
        while counter is not None:  # a row view counts into the score it was selected from
            counter.nfe += 1
            counter = counter.parent

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self._count()
        score = self.score_fn(x, t.to(x.dtype))
        if self.nfe == 1:   # checked once, at the first evaluation
            check_score(score, x)
        return score

    @property
    def has_variance(self) -> bool:
        """Whether the score function predicts a learned reverse variance."""
        return self.capabilities.forward_with_variance is not None

    def with_variance(self, x: torch.Tensor, t: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(score, v) from `forward_with_variance`, counted as one evaluation."""
        if not self.has_variance:
            raise ValueError(VARIANCE_NEEDED)
        self._count()
        score, v = self.capabilities.forward_with_variance(x, t.to(x.dtype))
        if v is None:
            raise ValueError("variance 'learned': forward_with_variance returned no v "
                             "(a network without learned-variance channels)")
        return score, v

    def select_rows(self, index: Sequence[int]) -> "CountedScore":
        """A view on the rows `index` (`select_rows`) whose calls also count here."""
        return CountedScore(select_rows(self.score_fn, index), parent=self)

    def chain_time(self, index: torch.Tensor) -> Optional[torch.Tensor]:
        """The model's own time for step `index` of the discrete chain, or None if it has none."""
        chain_time = self.capabilities.chain_time
        return None if chain_time is None else chain_time(index)


def check_score(score, x: torch.Tensor) -> None:
    """A score must be a floating tensor shaped like x (a wrong shape would broadcast
    silently in some samplers)."""
    if not isinstance(score, torch.Tensor) or not score.is_floating_point() \
            or score.shape != x.shape:
        got = (f"{tuple(score.shape)} {score.dtype}" if isinstance(score, torch.Tensor)
               else type(score).__name__)
        raise ValueError(f"score_fn returned {got} for x of shape {tuple(x.shape)}; a score "
                         f"function returns a floating tensor shaped like x")


VARIANCE_NEEDED = ("variance 'learned' needs a model with learned variances: "
                   "score_fn.forward_with_variance(x, t) -> (score, v)")


def counted(score_fn: ScoreFn) -> CountedScore:
    """`score_fn` as a `CountedScore` (itself if it already is one)."""
    return score_fn if isinstance(score_fn, CountedScore) else CountedScore(score_fn)


def coeff(c: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A `[B]` float64 coefficient cast to `x`'s dtype and broadcast against `x` `[B, ...]`."""
    return append_dims(c.to(x.dtype), x.ndim)


def data_prediction(x: torch.Tensor, score: torch.Tensor, mean_coeff, variance) -> torch.Tensor:
    """E[x_0 | x_t] = (x_t + σ_t²·∇log p_t(x_t)) / a_t (Tweedie's formula; Efron 2011, eq. 2.8),
    the one data prediction of every sampler. `mean_coeff` a_t and `variance` σ_t²: floats, or
    tensors broadcast against `x` `[B, ...]`."""
    return (x + variance * score) / mean_coeff


def tweedie_denoise(score_fn: ScoreFn, sde: SDE, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """`data_prediction` at `x` `[B, ...]` and time `t` `[B]` (float64): one score evaluation."""
    mean_coeff, std = sde.marginal_coeffs(t)
    score = score_fn(x, t)
    return data_prediction(x, score, coeff(mean_coeff, x), coeff(std ** 2, x))


def callback_denoised(score_fn: ScoreFn, sde: SDE, x: torch.Tensor,
                      t: torch.Tensor) -> torch.Tensor:
    """Tweedie's E[x_0 | x_t] for a callback, from the score behind `score_fn`'s count (a
    callback's estimate is not one of the method's evaluations)."""
    raw = score_fn.score_fn if isinstance(score_fn, CountedScore) else score_fn
    return tweedie_denoise(lambda y, s: raw(y, s.to(y.dtype)), sde, x, t)


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
