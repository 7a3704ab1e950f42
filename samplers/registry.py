"""The shared sampler signature and the registry of methods by name.

Every method is a function
    method(score_fn, sde, shape, *, generator=None, device=None, dtype=torch.float32, **options)
        -> SampleResult
registered with `@register_sampler("name")`, so any of them can be named from a config.
"""
from __future__ import annotations

import functools
from typing import Callable, Dict, NamedTuple, Optional

import torch

from samplers.budget import COSTS, Cost, steps_for_budget
# The result types live in samplers.common (every method builds them); named here as before.
from samplers.common import LikelihoodResult, SampleResult, callback_denoised  # noqa: F401
from samplers.options import Option, check_options, declare

SAMPLERS: Dict[str, Callable[..., "SampleResult"]] = {}


def register_sampler(name: str, options: Dict[str, Option], check=None, cost: Cost = None):
    """Decorator adding a sampling method to `SAMPLERS` under `name`, with the declaration of its
    `options` (`samplers.options`; `check`: of their combination, given them all resolved) and,
    for a fixed-step method, its `cost(options, num_steps)` in score evaluations (`nfe=`)."""
    def decorator(fn):
        if name in SAMPLERS:
            raise ValueError(f"sampler {name!r} is registered twice")
        declare(name, options, check)
        if cost is not None:
            COSTS[name] = cost
        SAMPLERS[name] = enforced(name, fn)
        return SAMPLERS[name]
    return decorator


COMMON = ("generator", "device", "dtype", "x_T", "callback")   # every method's, not declared


def enforced(name: str, fn):
    """`fn` under the contract: its options checked against the declaration first, run under
    `torch.no_grad()` (a sampler never records an autograd graph through its steps, which would
    hold every step's activations; methods that need gradients of the score, classifier guidance
    and DPS, enable them locally for that gradient only), the callback given the denoised
    estimate (`with_denoised`)."""
    @functools.wraps(fn)
    def run(score_fn, sde, shape, **kwargs):
        check_options(name, {k: v for k, v in kwargs.items() if k not in COMMON})
        if kwargs.get("callback") is not None:
            kwargs["callback"] = with_denoised(kwargs["callback"], score_fn, sde)
        with torch.no_grad():
            return fn(score_fn, sde, shape, **kwargs)
    return run


def with_denoised(callback, score_fn, sde):
    """`callback(i, t, x, denoised)` always given the denoised estimate E[x_0 | x_t]: where a
    method's step does not produce it, Tweedie's formula on one more evaluation of the score,
    outside the method's NFE (so only runs with a callback pay for it)."""
    if not callable(callback):
        return callback          # the method refuses it with its own message

    def report(i, t, x, denoised):
        if denoised is None:
            denoised = callback_denoised(score_fn, sde, x, t)
        callback(i, t, x, denoised)
    return report


def sample(score_fn, sde, shape, method: str = "pc", *, generator=None, device=None,
           dtype: torch.dtype = torch.float32, nfe: Optional[int] = None,
           x_T: Optional[torch.Tensor] = None, callback=None, **options) -> SampleResult:
    """Draw samples of `shape` `[B, ...]` by the named `method`; see each method for its options.

    `generator`: None (the global RNG), a torch.Generator, or a list of B per-sample generators.
    `nfe`: a budget of score evaluations for a fixed-step method, which then takes as many steps
    as it can within it (`samplers.budget`); `num_steps` counts time intervals for every method.
    Options are checked against the method's declaration (`samplers.options`) before any work.
    """
    if method not in SAMPLERS:
        raise ValueError(f"Unknown sampling method {method!r}; expected one of {sorted(SAMPLERS)}")
    check_options(method, options)     # (again in the method's wrapper: cheap)
    if nfe is not None:
        options = {**options, **steps_for_budget(method, nfe, options)}
    return SAMPLERS[method](score_fn, sde, tuple(shape), generator=generator, device=device,
                            dtype=dtype, x_T=x_T, callback=callback, **options)


class ConditionResult(NamedTuple):
    """Conditional samples `x` `[B, ...]` and the number of score calls `nfe` (each on the whole
    batch; for "smc" each call evaluates B·K particles). Sequential Monte Carlo also returns
    the effective sample size before each step `ess` `[num_steps, B]` (in [1, K]), whether
    each observation resampled there `resampled` `[num_steps, B]`, the final `particles`
    `[B, K, ...]` (at eps, before denoising) and their normalized `log_weights` `[B, K]`."""
    x: torch.Tensor
    nfe: int
    ess: Optional[torch.Tensor] = None
    resampled: Optional[torch.Tensor] = None
    particles: Optional[torch.Tensor] = None
    log_weights: Optional[torch.Tensor] = None
