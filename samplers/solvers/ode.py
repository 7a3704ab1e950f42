"""Probability-flow ODE sampling with scipy's `solve_ivp` (Song et al. 2021, eq. 13)."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch
from scipy import integrate

from samplers.common import (CountedScore, Generator, ScoreFn, check_callback, check_eps,
                             prior_sample, tweedie_denoise)
from samplers.flow import VPFlow, announcing_solver, guarded, reference_log_snr, reporting_solver
from samplers.options import DENOISE, EPS, MAX_NFE as MAX_NFE_OPTION, atol, choice, rtol
from samplers.registry import SampleResult, register_sampler
from sde_lib import SDE

# scipy.integrate.solve_ivp's methods.
ODE_METHODS = ("RK45", "RK23", "DOP853", "Radau", "BDF", "LSODA")
# Score evaluations after which a probability-flow solve is stopped (`samplers.flow.guarded`):
# far above what any usable model needs at any tolerance (~100–1000).
MAX_NFE = 20_000


OPTIONS = dict(rtol=rtol(1e-5), atol=atol(1e-5),
               ode_method=choice("RK45", ODE_METHODS, "scipy.integrate.solve_ivp's method"),
               eps=EPS, denoise=DENOISE, max_nfe=MAX_NFE_OPTION)


@register_sampler("ode", OPTIONS)
def ode_sampler(score_fn: ScoreFn, sde: SDE, shape: Sequence[int], *,
                generator: Generator = None, device=None,
                dtype: torch.dtype = torch.float32, rtol: float = 1e-5, atol: float = 1e-5,
                ode_method: str = "RK45", eps: float = 1e-3, denoise: bool = True,
                x_T: Optional[torch.Tensor] = None, callback=None,
                max_nfe: int = MAX_NFE) -> SampleResult:
    """Solve the probability-flow ODE from x_T ~ prior at T down to eps with `solve_ivp`.

    The ODE is integrated as the reference VP's in (τ, w = x/k) (`samplers.flow`), with the
    state in float64; `rtol` / `atol` apply to w, which has the scale of VP's x. `denoise` ends
    with Tweedie's E[x_0 | x_eps]. NFE counts every score evaluation, the solver's first-step
    selection included. `x_T` `[B, ...]` replaces the prior draw; `callback(i, t, x, denoised)`
    runs at T and after every accepted solver step (denoised None: scipy's steps hold none).
    The solve stops with `samplers.flow.FlowDiverged` as soon as its state is not finite, or
    after `max_nfe` evaluations. Returns `shape` `[B, ...]` samples of p_eps (of p_0 with
    `denoise`).
    """
    eps = check_eps(sde, eps)
    check_callback(callback)
    score_fn = CountedScore(score_fn)
    x = prior_sample(sde, shape, generator, device, dtype, x_T)
    flow = VPFlow(score_fn, sde, x.shape, x.dtype, x.device)
    # Reference-VP times and scales of the two ends: x = k·w.
    tau_T, tau_eps = flow.tau(sde.T), flow.tau(eps)
    w_T = x.double().cpu().reshape(-1).numpy() / flow.scale(sde.T)
    method = announcing_solver(ode_method, flow)
    if callback is not None:
        method = reporting_solver(method, _step_reporter(flow, sde, callback))
        callback(0, torch.full(x.shape[:1], float(sde.T), dtype=torch.float64, device=x.device),
                 x, None)
    with torch.no_grad():
        drift = guarded(flow.drift, flow, max_nfe, "probability-flow ODE")
        solution = integrate.solve_ivp(drift, (tau_T, tau_eps), w_T, rtol=rtol, atol=atol,
                                       method=method)
    if not solution.success:
        raise RuntimeError(f"solve_ivp failed: {solution.message}")
    w_eps = torch.from_numpy(np.ascontiguousarray(solution.y[:, -1]))
    x = (w_eps * flow.scale(eps)).view(x.shape).to(device=x.device, dtype=x.dtype)
    if denoise:
        x = tweedie_denoise(score_fn, sde, x, torch.full((x.shape[0],), eps, dtype=torch.float64,
                                                         device=x.device))
    return SampleResult(x, score_fn.nfe)


def _step_reporter(flow: VPFlow, sde: SDE, callback):
    """on_step(τ, w) for `reporting_solver`: callback(i, t, x = k·w, None), i = 1, 2, …."""
    count = [0]

    def on_step(tau: float, w) -> None:
        count[0] += 1
        lam = torch.tensor([reference_log_snr(tau)], dtype=torch.float64)
        t = sde.t_from_log_snr(lam)
        mean_coeff, std = sde.marginal_coeffs(t)
        k = torch.sqrt(mean_coeff ** 2 + std ** 2).item()
        x = flow.to_torch(w * k, w.size)
        callback(count[0], t.to(x.device).expand(x.shape[0]), x, None)
    return on_step
