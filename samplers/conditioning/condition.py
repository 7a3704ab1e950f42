"""Conditional sampling given a linear observation y = A·x_0 + noise_std·n: one entry point.

`condition(score_fn, sde, y, operator, method=...)` samples x given y with any score function
on any SDE. `operator` is a `samplers.conditioning.operators.LinearOperator` (`Mask` for inpainting,
`ChannelMean` for colorization, `AvgPool` for super-resolution, `Dense` / `MatrixFree` for
any other linear map). Methods (`CONDITION_METHODS`, options and defaults in
`METHOD_OPTIONS`):
    "replacement"  Song et al. 2021, App. I (`samplers.conditioning.replacement`); noiseless; biased when
                   the observed and unobserved parts are coupled. The default.
    "smc"          sequential Monte Carlo with K = `num_particles` particles per observation
                   (`samplers.conditioning.smc`); noiseless or noisy; consistent as K → ∞.
    "repaint"      Lugmayr et al. 2022, resampling jumps (`samplers.conditioning.repaint`); noiseless.
    "dps"          Chung et al. 2023, diffusion posterior sampling (`samplers.conditioning.dps`); noiseless or
                   noisy; needs a differentiable score.
"""
from __future__ import annotations

import math
from typing import Callable, Dict, Optional

import torch

from samplers.common import Generator, ScoreFn, check_choice, check_eps, check_num_steps
from samplers.conditioning.dps import dps
from samplers.conditioning.operators import LinearOperator
from samplers.options import Option, check_options, choice, declare, defaults, number
from samplers.solvers.pc import PC_OPTIONS, check_pc_options
from samplers.solvers.predictors import PREDICTORS
from samplers.registry import ConditionResult
from samplers.schedules import get_time_steps
from samplers.conditioning.repaint import repaint
from samplers.conditioning.replacement import Replacement, replacement_pc
from samplers.conditioning.smc import smc
from sde_lib import SDE

NOISELESS_ONLY = ("replacement", "repaint")
LOOKAHEADS = ("predictive", "tweedie")   # the resampling weights of "smc" (samplers.conditioning.smc)
STOCHASTIC = tuple(sorted(set(PREDICTORS) - {"none"}))


def stochastic_steps(sde: SDE, times: torch.Tensor, predictor: str):
    """The per-step floats (α, β, γ) of a stochastic predictor on `times`."""
    check_choice("predictor", predictor, STOCHASTIC)
    return PREDICTORS[predictor](sde, times, False).as_floats()


def _stepper(default: str) -> Option:
    return choice(default, STOCHASTIC, "the stochastic predictor of the reverse steps")


# The options of each method, declared once (`samplers.options`) as "condition:<method>".
declare("condition:replacement",
        {name: PC_OPTIONS[name] for name in ("predictor", "corrector", "snr", "n_steps",
                                             "probability_flow")},
        lambda o: check_pc_options(o["predictor"], o["corrector"], o["probability_flow"]))
declare("condition:smc", dict(
    num_particles=number("int", 16, "particles per observation (K× the cost)", 1),
    predictor=_stepper("reverse_diffusion"),
    ess_threshold=number("float", 0.5, "resample when ESS < this·K", 0, 1),
    lookahead=choice("predictive", LOOKAHEADS, "the resampling weights"),
    data_std=number("float", 1.0, "the data scale of the tweedie look-ahead", 0, open_lo=True)))
declare("condition:repaint", dict(
    predictor=_stepper("ancestral"),
    jump_length=number("int", 10, "RePaint's jump length j", 1),
    jump_n_sample=number("int", 10, "RePaint's resampling count r", 1)))
declare("condition:dps", dict(
    predictor=_stepper("ancestral"),
    dps_scale=number("float", 1.0, "DPS step size ζ", 0, open_lo=True)))
METHOD_OPTIONS: Dict[str, dict] = {m: defaults(f"condition:{m}")
                                   for m in ("replacement", "smc", "repaint", "dps")}
RUN_OPTIONS = ("eps", "num_steps", "denoise")   # `condition`'s own options, any method


def condition_options(method: str) -> set:
    """The option names `condition(..., method=method, **options)` accepts besides the
    observation, noise and generator: the method's (`METHOD_OPTIONS`) and `RUN_OPTIONS`."""
    check_choice("method", method, CONDITION_METHODS)
    return set(METHOD_OPTIONS[method]) | set(RUN_OPTIONS)


def check_condition_options(method: str, options: dict, prefix: str = "",
                            by_field: bool = False) -> dict:
    """The options of `method` (its declaration "condition:<method>"), checked before any work
    and completed with the defaults; one-line ValueError naming a bad or unknown one."""
    check_choice("method", method, CONDITION_METHODS)
    return check_options(f"condition:{method}", options, prefix, by_field)


def _replacement(score_fn, sde, y, operator, noise_std, times, generator, denoise, options):
    replace = Replacement(operator, y, operator.input_shape(y.shape), generator)
    result = replacement_pc(score_fn, sde, replace, times, options["predictor"],
                            options["corrector"], float(options["snr"]), options["n_steps"],
                            options["probability_flow"], denoise)
    return ConditionResult(result.x, result.nfe)


def _smc(score_fn, sde, y, operator, noise_std, times, generator, denoise, options):
    steps = stochastic_steps(sde, times, options["predictor"])
    return smc(score_fn, sde, y, operator, noise_std=noise_std, times=times, steps=steps,
               num_particles=options["num_particles"],
               ess_threshold=float(options["ess_threshold"]), lookahead=options["lookahead"],
               data_std=float(options["data_std"]), generator=generator, denoise=denoise)


def _repaint(score_fn, sde, y, operator, noise_std, times, generator, denoise, options):
    steps = stochastic_steps(sde, times, options["predictor"])
    replace = Replacement(operator, y, operator.input_shape(y.shape), generator)
    return repaint(score_fn, sde, replace, times, steps, options["jump_length"],
                   options["jump_n_sample"], denoise)


def _dps(score_fn, sde, y, operator, noise_std, times, generator, denoise, options):
    steps = stochastic_steps(sde, times, options["predictor"])
    return dps(score_fn, sde, y, operator, times=times, steps=steps,
               scale=float(options["dps_scale"]), generator=generator, denoise=denoise)


CONDITION_METHODS: Dict[str, Callable[..., ConditionResult]] = {
    "replacement": _replacement, "smc": _smc, "repaint": _repaint, "dps": _dps}


def check_observation(y: torch.Tensor, operator: LinearOperator, noise_std: float) -> float:
    """`y` a floating `[B, ...]` tensor that `operator` can produce; `noise_std` >= 0."""
    if not isinstance(operator, LinearOperator):
        raise ValueError(f"operator must be a samplers.conditioning.operators.LinearOperator, got "
                         f"{type(operator).__name__}")
    if not isinstance(y, torch.Tensor) or y.ndim < 2 or not y.is_floating_point():
        raise ValueError(f"y must be a floating tensor [B, ...], got "
                         f"{getattr(y, 'shape', type(y))}")
    try:
        probe = torch.zeros((y.shape[0],) + operator.input_shape(y.shape), dtype=y.dtype,
                            device=y.device)
        observed = tuple(operator(probe).shape)
    except RuntimeError as err:
        raise ValueError(f"operator does not apply to x of y's batch: {err}") from None
    if observed != tuple(y.shape):
        raise ValueError(f"y {tuple(y.shape)} does not match the operator's output {observed}")
    if isinstance(noise_std, bool) or not isinstance(noise_std, (int, float)) \
            or not 0 <= noise_std < math.inf:
        raise ValueError(f"noise_std must be a finite number >= 0, got {noise_std!r}")
    return float(noise_std)


@torch.no_grad()   # DPS enables gradients locally, for the score's only
def condition(score_fn: ScoreFn, sde: SDE, y: torch.Tensor, operator: LinearOperator, *,
              noise_std: float = 0.0, method: str = "replacement", generator: Generator = None,
              eps: float = 1e-3, num_steps: Optional[int] = None, denoise: bool = True,
              dtype: Optional[torch.dtype] = None, **options) -> ConditionResult:
    """Sample x `[B, ...]` given y = A·x + noise_std·n `[B, ...]`, one x per row of y.

    Args:
        operator: A (`samplers.conditioning.operators`); x's shape is `operator.input_shape(y.shape)`.
        noise_std: σ_y of the Gaussian observation noise (0: A·x = y exactly).
        method: a name in `CONDITION_METHODS`; `options` its own (`METHOD_OPTIONS`).
        eps, num_steps: the time grid from T to eps (`num_steps` default `sde.N`).
        denoise: end with Tweedie's E[x_0 | x_eps] (one more evaluation), projected back onto
            A·x = y when noiseless (except for "dps").
        generator: None, a torch.Generator, or a list of B per-sample generators (sample b
            then depends on generator b and y[b] only).
        dtype: of the computation (default y's).
    Returns ConditionResult(x, nfe, ...): see `samplers.registry.ConditionResult`.
    """
    options = check_condition_options(method, options)
    y = y.to(dtype) if isinstance(y, torch.Tensor) and dtype is not None else y
    noise_std = check_observation(y, operator, noise_std)
    if noise_std > 0 and method in NOISELESS_ONLY:
        raise ValueError(f"method {method!r} assumes a noiseless observation (noise_std = 0); "
                         f"use 'smc' or 'dps' for noise_std = {noise_std}")
    eps, num_steps = check_eps(sde, eps), check_num_steps(sde, num_steps)
    times = get_time_steps(sde, "uniform", num_steps, eps)   # uniform in t
    return CONDITION_METHODS[method](score_fn, sde, y, operator, noise_std, times, generator,
                                     bool(denoise), options)
