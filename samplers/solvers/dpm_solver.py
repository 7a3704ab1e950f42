"""DPM-Solver++ multistep (Lu et al. 2022b, Alg. 2) in data-prediction form, any SDE, ODE and SDE.

`samplers.multistep` gives the exact solution of the reverse process with noise level η in the
half log-SNR ℓ = log(a/σ) = `sde.log_snr`/2 and its coefficients. DPM-Solver++(kM) integrates
exactly the polynomial through the last k data predictions x̂_0 = (x + σ²·s)/a (order 2 with
Lu et al.'s leading-order second term, `two_node` "bh2"; order 3 with the exact integrals):
- "dpm_solver": η = 0, the probability-flow ODE; order 1 is DDIM. Deterministic given x_T.
  With `unic`, the UniC corrector of Zhao et al. (2023) follows every step (no extra evaluation).
- "dpm_solver_sde": η > 0 (default 1, the reverse SDE): DPM-Solver++(2M) SDE / (3M) SDE,
      x_t = (σ_t/σ_s)e^{−ηh}·x_s + a_t·Σ_j w_j·m_j + σ_t·√(1 − e^{−2ηh})·z,
  with z per sample from `generator` (one generator or a list of per-sample ones).
The first steps use the orders their history allows. The final step to the data is first order:
with `denoise` it is Tweedie's E[x_0 | x_eps] (the exponential integrator's step to σ = 0), so
no solver step needs lowering (`lower_order_final` default False); without `denoise`, the last
solver steps are lowered (orders …, 2, 1; default True), as Lu et al. (2022b, Sec. 5) advise for
few steps. Works on VE (a = 1) as on VP and sub-VP: only `marginal_coeffs` and `log_snr` are used.
NFE = num_steps + [denoise].
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from samplers.common import (CountedScore, Generator, ScoreFn, check_callback, check_eps,
                             prior_sample)
from samplers.multistep import Callback, plan_steps, run_multistep
from samplers.budget import one_per_step
from samplers.options import (DENOISE, EPS, LOWER_ORDER_FINAL, ORDER, RHO, number, schedule,
                              steps)
from samplers.registry import SampleResult, register_sampler
from samplers.schedules import TIME_SCHEDULES, Times, resolve_times
from sde_lib import SDE

DEFAULT_NUM_STEPS = 20


def step_orders(num_steps: int, order: int, lower_order_final: bool) -> list:
    """Order of each of the `num_steps` steps: warm-up from 1, and down to 1 at the end if asked."""
    orders = [min(order, i + 1) for i in range(num_steps)]
    if lower_order_final:
        orders = [min(k, num_steps - i) for i, k in enumerate(orders)]
    return orders


def run_dpm_solver(score_fn: ScoreFn, sde: SDE, shape: Sequence[int], *, generator: Generator,
                   device, dtype: torch.dtype, order: int, schedule: Times, rho: float,
                   lower_order_final: Optional[bool], eps: float, num_steps: Optional[int],
                   denoise: bool, eta: float, two_node: str, unic: bool,
                   x_T: Optional[torch.Tensor], callback: Callback) -> SampleResult:
    """The multistep loop shared by "dpm_solver", "dpm_solver_sde" and "unipc" (validated here)."""
    check_callback(callback)
    if lower_order_final is None:
        lower_order_final = not denoise
    times = resolve_times(sde, schedule, num_steps, check_eps(sde, eps), DEFAULT_NUM_STEPS, rho)
    orders = step_orders(times.shape[0] - 1, order, lower_order_final)
    plan = plan_steps(sde, times, orders, eta=eta, two_node=two_node, correct=unic)
    counted = CountedScore(score_fn)
    x = prior_sample(sde, shape, generator, device, dtype, x_T)
    x = run_multistep(counted, sde, x, times, plan, generator, denoise, callback)
    return SampleResult(x, counted.nfe)


# The options of every multistep method (`unipc` adds its variant and corrector).
MULTISTEP_OPTIONS = dict(order=ORDER, schedule=schedule("logsnr", TIME_SCHEDULES), rho=RHO,
                         lower_order_final=LOWER_ORDER_FINAL, eps=EPS,
                         num_steps=steps(DEFAULT_NUM_STEPS), denoise=DENOISE)


@register_sampler("dpm_solver", MULTISTEP_OPTIONS, cost=one_per_step)
def dpm_solver_sampler(score_fn: ScoreFn, sde: SDE, shape: Sequence[int], *,
                       generator: Generator = None, device=None,
                       dtype: torch.dtype = torch.float32, order: int = 2,
                       schedule: Times = "logsnr", rho: float = 7.0,
                       lower_order_final: Optional[bool] = None,
                       eps: float = 1e-3, num_steps: Optional[int] = None, denoise: bool = True,
                       x_T: Optional[torch.Tensor] = None,
                       callback: Callback = None) -> SampleResult:
    """DPM-Solver++(order)M on the probability-flow ODE: `shape` `[B, ...]` samples of p_eps.

    With `denoise`, samples of p_0 (Tweedie's E[x_0 | x_eps] as the last step).

    Args:
        order: 1, 2 or 3; schedule: a name in `samplers.schedules.TIME_SCHEDULES` or explicit
            decreasing times (e.g. from `samplers.fit_schedule`); rho: ρ of "edm".
        lower_order_final: lower the last solver steps to orders …, 2, 1 (default: only without
            `denoise`, whose Tweedie step is otherwise the first-order final step).
        eps: the last time; num_steps: steps from T to eps (default 20).
        x_T: a starting state `[B, ...]` instead of the prior draw.
        callback: `callback(i, t, x, denoised)` at every grid time (t `[B]` float64).
    NFE = num_steps + [denoise]. No random number is drawn after the prior sample. With the
    UniC corrector after every step (Zhao et al. 2023), it is "unipc".
    """
    return run_dpm_solver(score_fn, sde, shape, generator=generator, device=device, dtype=dtype,
                          order=order, schedule=schedule, rho=rho,
                          lower_order_final=lower_order_final, eps=eps, num_steps=num_steps,
                          denoise=denoise, eta=0.0, two_node="bh2", unic=False,
                          x_T=x_T, callback=callback)


@register_sampler("dpm_solver_sde", dict(
    MULTISTEP_OPTIONS, eta=number("float", 1.0, "the share of the reverse SDE's noise (1: the "
                                  "reverse SDE)", 0, 1, open_lo=True)), cost=one_per_step)
def dpm_solver_sde_sampler(score_fn: ScoreFn, sde: SDE, shape: Sequence[int], *,
                           generator: Generator = None, device=None,
                           dtype: torch.dtype = torch.float32, order: int = 2, eta: float = 1.0,
                           schedule: Times = "logsnr", rho: float = 7.0,
                           lower_order_final: Optional[bool] = None, eps: float = 1e-3,
                           num_steps: Optional[int] = None, denoise: bool = True,
                           x_T: Optional[torch.Tensor] = None,
                           callback: Callback = None) -> SampleResult:
    """DPM-Solver++(order)M SDE: `shape` `[B, ...]` samples of p_eps (of p_0 with `denoise`).

    Args:
        order: 1, 2 or 3 ((2M) SDE, (3M) SDE); eta: η ∈ (0, 1], the share of the reverse SDE's
            noise (1: the reverse SDE itself, Song et al. 2021, eq. 6).
        generator: one torch.Generator or a list of per-sample generators for the noise.
        Other options as in "dpm_solver". NFE = num_steps + [denoise].
    """
    return run_dpm_solver(score_fn, sde, shape, generator=generator, device=device, dtype=dtype,
                          order=order, schedule=schedule, rho=rho,
                          lower_order_final=lower_order_final, eps=eps, num_steps=num_steps,
                          denoise=denoise, eta=float(eta), two_node="bh2", unic=False,
                          x_T=x_T, callback=callback)
