"""The shared sampler signature, its result types, and the registry of methods by name.

Every method is a function
    method(score_fn, sde, shape, *, generator=None, device=None, dtype=torch.float32, **options)
        -> SampleResult
registered with `@register_sampler("name")`, so any of them can be named from a config.
"""
from __future__ import annotations

from typing import Callable, Dict, NamedTuple, Optional

import torch

SAMPLERS: Dict[str, Callable[..., "SampleResult"]] = {}


class SampleResult(NamedTuple):
    """Samples `x` `[B, ...]` and the number of score evaluations `nfe` (per batch, an int)."""
    x: torch.Tensor
    nfe: int


class LikelihoodResult(NamedTuple):
    """log p_eps(x) in nats `[B]`, the end point `z` of the flow, and the score evaluations."""
    logp: torch.Tensor
    z: torch.Tensor
    nfe: int


def register_sampler(name: str):
    """Decorator adding a sampling method to `SAMPLERS` under `name`."""
    def decorator(fn):
        if name in SAMPLERS:
            raise ValueError(f"sampler {name!r} is registered twice")
        SAMPLERS[name] = fn
        return fn
    return decorator


def sample(score_fn, sde, shape, method: str = "pc", *, generator=None, device=None,
           **options) -> SampleResult:
    """Draw samples of `shape` `[B, ...]` by the named `method`; see each method for its options.

    `generator`: None (the global RNG), a torch.Generator, or a list of B per-sample generators.
    """
    if method not in SAMPLERS:
        raise ValueError(f"Unknown sampling method {method!r}; expected one of {sorted(SAMPLERS)}")
    return SAMPLERS[method](score_fn, sde, tuple(shape), generator=generator, device=device,
                            **options)


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
