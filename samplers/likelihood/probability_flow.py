"""Exact log-likelihood through the probability-flow ODE (Song et al. 2021, App. D.2; FFJORD).

Along an ODE dw/dτ = v(w, τ), d log q_τ(w(τ))/dτ = −∇·v (instantaneous change of variables).
The ODE is the reference VP's in (τ, w = x/k) (`samplers.flow`), v = −½β(τ)·(w + s_VP(w)), so
∇·v = −½β(τ)·(d + tr ∂s_VP/∂w). Integrating from eps to T, and with x = k·w at both ends,
    log p_eps(x) = log p_T(z) + d·log(k_T/k_eps) + ∫ ∇·v dτ,
where log p_T(z) is replaced by `sde.prior_logp(z)`, z the end of the flow.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy import integrate

from samplers.common import CountedScore, Generator, ScoreFn, check_eps
from samplers.flow import VPFlow, announcing_solver, guarded, to_numpy
from samplers.likelihood.dpm import DPM_METHODS, dpm_log_likelihood
from samplers.solvers.ode import MAX_NFE, ODE_METHODS
from samplers.options import (EPS, MAX_NFE as MAX_NFE_OPTION, atol as atol_option, check_options,
                              choice, declare, number, rtol as rtol_option, with_default)
from samplers.registry import LikelihoodResult
from sde_lib import SDE, randn

DIVERGENCES = ("rademacher", "gaussian", "exact")
# The likelihood's solvers: scipy's (in the reference VP's time) and the adaptive DPM-Solver pairs.
LIKELIHOOD_METHODS = tuple(ODE_METHODS) + tuple(DPM_METHODS)
# The options of the likelihood, declared once (`samplers.options`).
declare("likelihood:log_likelihood", dict(
    eps=with_default(EPS, 1e-5, doc="the data end of the flow (log p_eps is computed)"),
    rtol=rtol_option(1e-5), atol=atol_option(1e-5),
    ode_method=choice("RK45", LIKELIHOOD_METHODS, "scipy's solver or the adaptive DPM-Solver"),
    divergence=choice("rademacher", DIVERGENCES, "the divergence: Hutchinson–Skilling or exact"),
    num_probes=number("int", 1, "probe vectors per evaluation (not for 'exact')", 1),
    max_nfe=MAX_NFE_OPTION))
EXACT_CHUNK = 2 ** 22  # elements of basis probes per backward pass in "exact" mode


def draw_probes(x: torch.Tensor, divergence: str, num_probes: int,
                generator: Generator) -> torch.Tensor:
    """Probe vectors `[P, B, ...]`: P Rademacher or Gaussian draws, or the d basis vectors."""
    if divergence == "exact":
        basis = torch.eye(x[0].numel(), dtype=x.dtype, device=x.device)          # [d, d]
        return basis[:, None, :].expand(-1, x.shape[0], -1).reshape(-1, *x.shape)
    # [B, P, ...] so that a list of per-sample generators draws sample i's probes.
    gaussian = randn((x.shape[0], num_probes) + tuple(x.shape[1:]), generator, x.device, x.dtype)
    gaussian = gaussian.transpose(0, 1)
    return gaussian if divergence == "gaussian" else torch.sign(gaussian)   # sign: Rademacher


def trace_estimate(output: torch.Tensor, inputs: torch.Tensor, probes: torch.Tensor,
                   exact: bool) -> torch.Tensor:
    """Σ_p vₚᵀ(∂output/∂inputs)vₚ over basis probes (exact), else its mean (Hutchinson–Skilling).

    One vector–Jacobian product per probe, batched over probes; `[B]` float64.
    """
    if probes.shape[0] == 1:                      # the common case: one backward pass, no vmap
        vjp, = torch.autograd.grad(output, inputs, probes[0])
        return torch.linalg.vecdot(vjp.flatten(1), probes[0].flatten(1)).double()
    chunk = max(1, EXACT_CHUNK // probes[0].numel())
    total = torch.zeros(inputs.shape[0], dtype=torch.float64, device=inputs.device)
    for start in range(0, probes.shape[0], chunk):
        v = probes[start:start + chunk]                                          # [p, B, ...]
        vjp, = torch.autograd.grad(output, inputs, v, is_grads_batched=True,
                                   retain_graph=start + chunk < probes.shape[0])
        total += torch.linalg.vecdot(vjp.flatten(2), v.flatten(2)).double().sum(0)  # [p, B] -> [B]
    return total if exact else total / probes.shape[0]


def _ode_function(flow: VPFlow, probes: torch.Tensor, exact: bool):
    """scipy's fun(τ, [w, ∫∇·v]) for the likelihood: one score evaluation per call.

    With x = k·w, s_VP(w) = k·s(x) and tr ∂s_VP/∂w = k²·tr ∂s/∂x: the VJP is taken at x, so the
    graph holds the score function alone.
    """
    num = flow.shape[0] * flow.num_dims

    def fun(tau: float, y: np.ndarray) -> np.ndarray:
        t, k, beta = flow.coefficients(tau)
        w = y[:num]
        with torch.enable_grad():
            x = flow.to_torch(k * w, num).requires_grad_(True)
            score = flow.score_fn(x, t)
            trace = trace_estimate(score, x, probes, exact)
        out = np.empty_like(y)
        # dw/dτ = −½β(w + k·s) and ∇·v = −½β(d + k²·tr ∂s/∂x), in numpy on the state side.
        np.multiply(to_numpy(score), k, out=out[:num])
        out[:num] += w
        out[num:] = flow.num_dims + k ** 2 * to_numpy(trace)
        out *= -0.5 * beta
        return out
    return fun


def log_likelihood(score_fn: ScoreFn, sde: SDE, x: torch.Tensor, *, eps: float = 1e-5,
                   rtol: float = 1e-5, atol: float = 1e-5, ode_method: str = "RK45",
                   divergence: str = "rademacher", num_probes: int = 1,
                   generator: Generator = None, max_nfe: int = MAX_NFE) -> LikelihoodResult:
    """log p_eps(x) in nats `[B]` (float64) for x `[B, ...]`, by the probability-flow ODE.

    Args:
        eps: the data-side end of the flow; rtol, atol, ode_method: of `scipy.integrate.solve_ivp`.
        divergence: "exact" (trace from d vector–Jacobian products, for small d), "rademacher" or
            "gaussian" (Hutchinson–Skilling with probes fixed along the flow, unbiased).
        num_probes: Hutchinson probes per sample, averaged (one batched backward pass).
        generator: draws the probes.
        max_nfe: the solve stops with `samplers.flow.FlowDiverged` after this many score
            evaluations, or as soon as the state is not finite (a diverging model).
    Returns LikelihoodResult(logp, z, nfe): z `[B, ...]` the end of the flow at T, typed like x,
    and nfe the score evaluations (one per solver call; the probes share its forward pass).
    """
    check_options("likelihood:log_likelihood", dict(eps=eps, rtol=rtol, atol=atol, ode_method=ode_method,
                                         divergence=divergence, num_probes=num_probes,
                                         max_nfe=max_nfe))
    eps = check_eps(sde, eps)
    if ode_method in DPM_METHODS:
        probes = draw_probes(x, divergence, num_probes, generator)
        exact = divergence == "exact"
        return dpm_log_likelihood(score_fn, sde, x, eps=eps, rtol=rtol, atol=atol,
                                  order=DPM_METHODS[ode_method], probes=probes,
                                  trace_fn=lambda out, inp, v: trace_estimate(out, inp, v, exact),
                                  max_nfe=max_nfe)
    score_fn = CountedScore(score_fn)
    flow = VPFlow(score_fn, sde, x.shape, x.dtype, x.device)
    probes = draw_probes(x, divergence, num_probes, generator)
    # Start at eps with w = x/k; the last B entries accumulate ∫∇·v dτ.
    k_eps, k_T = flow.scale(eps), flow.scale(sde.T)
    y0 = np.concatenate([to_numpy(x) / k_eps, np.zeros(x.shape[0])])
    fun = guarded(_ode_function(flow, probes, divergence == "exact"), flow,
                  max_nfe, "likelihood ODE")
    solution = integrate.solve_ivp(fun,
                                   (flow.tau(eps), flow.tau(sde.T)), y0, rtol=rtol, atol=atol,
                                   method=announcing_solver(ode_method, flow))
    if not solution.success:
        raise RuntimeError(f"solve_ivp failed: {solution.message}")
    end = torch.from_numpy(np.ascontiguousarray(solution.y[:, -1])).to(x.device)
    z = (end[:-x.shape[0]] * k_T).view(x.shape)
    integral = end[-x.shape[0]:]
    logp = sde.prior_logp(z) + flow.num_dims * np.log(k_T / k_eps) + integral
    return LikelihoodResult(logp, z.to(x.dtype), score_fn.nfe)
