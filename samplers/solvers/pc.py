"""Predictor–corrector sampling (Song et al. 2021, Alg. 1), and each predictor on its own.

The `num_steps + 1` times run uniformly from T to eps. At each time but the last, the corrector
takes `n_steps` Langevin steps at t, then the predictor moves x to the next time. With `denoise`,
Tweedie's formula at eps ends the run. NFE = num_steps·([predictor] + n_steps·[corrector]) +
[denoise], where "none" contributes no evaluation.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch

from samplers.common import (VARIANCE_NEEDED, CountedScore, Generator, ScoreFn, check_callback,
                             check_eps, check_num_steps, finish_run, prior_sample)
from samplers.schedules import get_time_steps
from samplers.solvers.correctors import CORRECTORS
from samplers.solvers.predictors import (ANCESTRAL_VARIANCES, PREDICTORS, STOCHASTIC_ONLY,
                                 affine_step, ancestral_log_variances, learned_variance_step)
from samplers.budget import one_per_step
from samplers.options import DENOISE, EPS, choice, flag, number, steps
from samplers.registry import SampleResult, register_sampler
from sde_lib import SDE


def check_pc_options(predictor: str, corrector: str, probability_flow: bool,
                     variance: Optional[str] = None) -> None:
    """The combinations the declaration cannot say (each name is checked by it), before any work."""
    if predictor == "none" and corrector == "none":
        raise ValueError("predictor and corrector cannot both be 'none': nothing would be sampled")
    if probability_flow and predictor in STOCHASTIC_ONLY:
        raise ValueError(f"probability_flow is not defined for predictor {predictor!r}; "
                         f"expected one of {sorted(set(PREDICTORS) - STOCHASTIC_ONLY - {'none'})}")
    if variance is not None:
        if predictor != "ancestral":
            raise ValueError(f"variance applies to predictor 'ancestral' only, "
                             f"got predictor {predictor!r}")


PROBABILITY_FLOW = flag(False, "run the predictor on the probability-flow ODE")
VARIANCE = choice(None, ANCESTRAL_VARIANCES, "the ancestral predictor's reverse variance "
                  "(None: the SDE's)", optional=True)
PC_OPTIONS = dict(
    predictor=choice("reverse_diffusion", PREDICTORS, "the predictor (Song et al. 2021, Alg. 1)"),
    corrector=choice("langevin", CORRECTORS, "the corrector"),
    snr=number("float", 0.16, "the corrector's signal-to-noise ratio", 0, 1, open_lo=True),
    n_steps=number("int", 1, "corrector steps per time", 1, field="n_steps_each"),
    probability_flow=PROBABILITY_FLOW, eps=EPS, num_steps=steps("the SDE's N"),
    denoise=DENOISE, variance=VARIANCE)


def _check_pc(options) -> None:
    check_pc_options(options["predictor"], options["corrector"], options["probability_flow"],
                     options["variance"])


def _pc_cost(options, num_steps: int) -> int:
    per_step = (options["predictor"] != "none") + options["n_steps"] * (options["corrector"] != "none")
    return num_steps * per_step + bool(options["denoise"])


@register_sampler("pc", PC_OPTIONS, _check_pc, _pc_cost)
def pc_sampler(score_fn: ScoreFn, sde: SDE, shape: Sequence[int], *,
               generator: Generator = None, device=None,
               dtype: torch.dtype = torch.float32, predictor: str = "reverse_diffusion",
               corrector: str = "langevin", snr: float = 0.16, n_steps: int = 1,
               probability_flow: bool = False, eps: float = 1e-3, num_steps: Optional[int] = None,
               denoise: bool = True, variance: Optional[str] = None,
               x_T: Optional[torch.Tensor] = None, callback=None) -> SampleResult:
    """Predictor–corrector sampler: `shape` `[B, ...]` samples of p_eps (of p_0 with `denoise`).

    Args:
        predictor: a name in `PREDICTORS`; corrector: a name in `CORRECTORS`.
        snr: corrector signal-to-noise ratio; n_steps: corrector steps per time.
        probability_flow: predict along the probability-flow ODE instead of the reverse SDE.
        eps: the last time; num_steps: predictor steps (default `sde.N`).
        denoise: end with Tweedie's E[x_0 | x_eps] (one more score evaluation).
        variance: the "ancestral" predictor's noise variance (`ANCESTRAL_VARIANCES`; None: the
            SDE's `ancestral_variance`); "learned" needs `score_fn.forward_with_variance`.
        x_T: a starting state `[B, ...]` instead of the prior draw.
        callback: `callback(i, t, x, denoised)` at every grid time t_i (t `[B]` float64), before
            its corrector; denoised: Tweedie's E[x_0 | x_t] (`samplers.registry.with_denoised`).
    """
    check_pc_options(predictor, corrector, probability_flow, variance)
    score_fn = CountedScore(score_fn)
    if variance == "learned" and not score_fn.has_variance:
        raise ValueError(VARIANCE_NEEDED)
    check_callback(callback)
    eps, num_steps = check_eps(sde, eps), check_num_steps(sde, num_steps)
    times = get_time_steps(sde, "uniform", num_steps, eps)   # uniform in t
    variance_option = {} if variance is None else {"variance": variance}
    steps = PREDICTORS[predictor](sde, times, probability_flow, **variance_option)
    steps = steps.as_floats() if steps is not None else None
    log_variances = None
    if variance == "learned":   # per-element noise, N&D 2021, eq. 15
        log_variances = list(zip(*(c.tolist() for c in ancestral_log_variances(sde, times))))
    corrector = CORRECTORS[corrector]
    scales = corrector.scale(sde, times[:-1], snr).tolist() if corrector is not None else None
    x = prior_sample(sde, shape, generator, device, dtype, x_T)
    x = pc_loop(score_fn, x, times, steps, corrector, scales, n_steps, generator,
                log_variances=log_variances, callback=callback)
    return finish_run(score_fn, sde, x, times, denoise, callback, num_steps)


def pc_loop(score_fn: CountedScore, x: torch.Tensor, times: torch.Tensor, steps, corrector,
            scales, n_steps: int, generator: Generator, *, log_variances=None, callback=None,
            before: Optional[Callable[[torch.Tensor, int], torch.Tensor]] = None) -> torch.Tensor:
    """The PC iteration over `times` `[K + 1]` (Song et al. 2021, Alg. 1), written once: at each
    time but the last, `n_steps` corrector steps, then the predictor's step to the next time.
    `steps`: the predictor's per-step floats (None: no predictor); `corrector`: a `CORRECTORS`
    entry (None: none) with its `scales`; `before(x, i)` runs before every evaluation at time i
    (conditioning by replacement re-noises the observed component there)."""
    t_x = times.to(device=x.device, dtype=x.dtype)[:, None].expand(-1, x.shape[0])  # [K + 1, B]
    for i in range(times.shape[0] - 1):
        t = t_x[i]
        if callback is not None:
            callback(i, times[i].to(x.device).expand(x.shape[0]), x, None)
        if corrector is not None:
            # Corrector: Langevin steps towards p_t.
            x = x if before is None else before(x, i)
            x = corrector.step(score_fn, x, t, scales[i], n_steps, generator)
        if log_variances is not None:
            # Predictor: ancestral step with the model's variance.
            x = learned_variance_step(score_fn, x, t, steps[i], log_variances[i], generator)
        elif steps is not None:
            # Predictor: reverse-time step t_i -> t_{i+1}.
            x = x if before is None else before(x, i)
            x = affine_step(score_fn, x, t, steps[i], generator)
    return x


def _predictor_only(name: str):
    """The sampler running predictor `name` alone (PC with corrector "none")."""
    def sampler(score_fn: ScoreFn, sde: SDE, shape: Sequence[int], *,
                generator: Generator = None, device=None,
                dtype: torch.dtype = torch.float32, probability_flow: bool = False,
                eps: float = 1e-3, num_steps: Optional[int] = None, denoise: bool = True,
                x_T: Optional[torch.Tensor] = None, callback=None) -> SampleResult:
        return pc_sampler(score_fn, sde, shape, generator=generator, device=device, dtype=dtype,
                          predictor=name, corrector="none", probability_flow=probability_flow,
                          eps=eps, num_steps=num_steps, denoise=denoise, x_T=x_T,
                          callback=callback)
    sampler.__name__ = sampler.__qualname__ = name
    sampler.__doc__ = (f"PC sampling with predictor {name!r} and no corrector: `num_steps` score "
                       f"evaluations (+1 with `denoise`). Options as in `pc_sampler`.")
    return sampler


PREDICTOR_OPTIONS = dict(probability_flow=PROBABILITY_FLOW, eps=EPS,
                         num_steps=steps("the SDE's N"), denoise=DENOISE)
for _name in ("reverse_diffusion", "euler_maruyama"):
    register_sampler(_name, PREDICTOR_OPTIONS, cost=one_per_step)(_predictor_only(_name))


@register_sampler("ancestral", dict(eps=EPS, num_steps=steps("the SDE's N"), denoise=DENOISE,
                                   variance=VARIANCE), cost=one_per_step)
def ancestral(score_fn: ScoreFn, sde: SDE, shape: Sequence[int], *,
              generator: Generator = None, device=None, dtype: torch.dtype = torch.float32,
              eps: float = 1e-3, num_steps: Optional[int] = None, denoise: bool = True,
              variance: Optional[str] = None,
              x_T: Optional[torch.Tensor] = None, callback=None) -> SampleResult:
    """Ancestral sampling (PC with predictor "ancestral", no corrector): `num_steps` score
    evaluations (+1 with `denoise`). `variance`: None (the SDE's `ancestral_variance`), "beta",
    "posterior" or "learned" (see `samplers.solvers.predictors.ancestral`). Options as in `pc_sampler`."""
    return pc_sampler(score_fn, sde, shape, generator=generator, device=device, dtype=dtype,
                      predictor="ancestral", corrector="none", eps=eps, num_steps=num_steps, denoise=denoise, variance=variance, x_T=x_T,
                      callback=callback)
