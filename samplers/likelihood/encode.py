"""Latent codes by the probability-flow ODE (Song et al. 2021, eq. 13 and Sec. 4.3).

The flow dx/dt = f(x, t) − ½g(t)²·s(x, t) is deterministic and invertible: integrating it from eps
to T maps data x to a latent z (`encode`), from T to eps maps z back (`decode`), and carries
p_eps onto p_T, about the prior. Both integrate the flow as the reference VP's in (τ, w = x/k),
with scipy's `solve_ivp` on the whole batch (`samplers.flow`): error control is on the batch's
joint state, so a row's result depends on its batchmates within the tolerances. `slerp`
interpolates between latents along a great circle, which keeps Gaussian latents typical.
"""
from __future__ import annotations

from typing import NamedTuple, Tuple, Union

import numpy as np
import torch
from scipy import integrate

from samplers.common import CountedScore, ScoreFn, tweedie_denoise
from samplers.flow import VPFlow, announcing_solver, guarded, to_numpy
from samplers.common import check_eps
from samplers.options import DENOISE, SCHEMA, check_options, declare, with_default
from samplers.solvers.ode import MAX_NFE
from samplers.registry import SampleResult
from sde_lib import SDE


# The options of encode and decode, declared once (the ODE sampler's, with decode's `denoise`
# off by default so that decode inverts encode).
declare("likelihood:encode", {name: SCHEMA["ode"][name] for name in ("eps", "rtol", "atol",
                                                                      "ode_method")})
declare("likelihood:decode", dict(SCHEMA["likelihood:encode"],
                                  denoise=with_default(DENOISE, False)))


class EncodeResult(NamedTuple):
    """Latents `z` `[B, ...]` (the flow's end at T) and the score evaluations `nfe`."""
    z: torch.Tensor
    nfe: int


def check_batch(name: str, x) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim < 2 or not x.is_floating_point():
        raise ValueError(f"{name} must be a floating tensor [B, ...], got "
                         f"{getattr(x, 'shape', type(x))}")


def flow_map(score_fn: ScoreFn, sde: SDE, x: torch.Tensor, t_start: float, t_end: float,
             rtol: float, atol: float, ode_method: str) -> Tuple[torch.Tensor, int]:
    """x `[B, ...]` at t_start carried along the probability-flow ODE to t_end: (x_end, nfe).

    The state is float64 on the solver side; `rtol` / `atol` apply to w = x/k.
    """
    counted = CountedScore(score_fn)
    flow = VPFlow(counted, sde, x.shape, x.dtype, x.device)
    w_start = to_numpy(x) / flow.scale(t_start)
    with torch.no_grad():
        drift = guarded(flow.drift, flow, MAX_NFE, "probability-flow ODE")
        solution = integrate.solve_ivp(drift, (flow.tau(t_start), flow.tau(t_end)), w_start,
                                       rtol=rtol, atol=atol,
                                       method=announcing_solver(ode_method, flow))
    if not solution.success:
        raise RuntimeError(f"solve_ivp failed: {solution.message}")
    w_end = torch.from_numpy(np.ascontiguousarray(solution.y[:, -1]))
    x_end = (w_end * flow.scale(t_end)).view(x.shape).to(device=x.device, dtype=x.dtype)
    return x_end, counted.nfe


def encode(score_fn: ScoreFn, sde: SDE, x: torch.Tensor, *, eps: float = 1e-3,
           rtol: float = 1e-5, atol: float = 1e-5, ode_method: str = "RK45") -> EncodeResult:
    """The latent z = x(T) of data x = x(eps) `[B, ...]` under the probability-flow ODE.

    `rtol`, `atol`, `ode_method`: of `scipy.integrate.solve_ivp`. Returns z typed like x.
    """
    check_options("likelihood:encode", dict(eps=eps, rtol=rtol, atol=atol, ode_method=ode_method))
    eps = check_eps(sde, eps)
    check_batch("x", x)
    return EncodeResult(*flow_map(score_fn, sde, x, eps, sde.T, rtol, atol, ode_method))


def decode(score_fn: ScoreFn, sde: SDE, z: torch.Tensor, *, eps: float = 1e-3,
           rtol: float = 1e-5, atol: float = 1e-5, ode_method: str = "RK45",
           denoise: bool = False) -> SampleResult:
    """The data x(eps) `[B, ...]` of latents z = x(T), the inverse of `encode` (same options).

    `denoise` ends with Tweedie's E[x_0 | x_eps] (one more evaluation; no longer the inverse).
    """
    check_options("likelihood:decode", dict(eps=eps, rtol=rtol, atol=atol, ode_method=ode_method,
                                            denoise=denoise))
    eps = check_eps(sde, eps)
    check_batch("z", z)
    x, nfe = flow_map(score_fn, sde, z, sde.T, eps, rtol, atol, ode_method)
    if denoise:
        t = torch.full((x.shape[0],), eps, dtype=torch.float64, device=x.device)
        x, nfe = tweedie_denoise(score_fn, sde, x, t), nfe + 1
    return SampleResult(x, nfe)


def slerp(z0: torch.Tensor, z1: torch.Tensor, alpha: Union[float, torch.Tensor]) -> torch.Tensor:
    """Spherical interpolation sin((1−α)θ)/sin θ·z0 + sin(αθ)/sin θ·z1 (Shoemake 1985).

    z0, z1: one latent each, of the same shape S (e.g. `[C, H, W]`); θ the angle between them
    (flattened). alpha: a float (result `S`) or `[K]` (result `[K, *S]`). Parallel latents
    (θ < 1e-6) are interpolated linearly, the limit; opposite ones have no unique great circle
    and raise ValueError.
    """
    if not isinstance(z0, torch.Tensor) or not isinstance(z1, torch.Tensor) \
            or z0.shape != z1.shape:
        raise ValueError(f"z0 and z1 must be tensors of one shape, got "
                         f"{getattr(z0, 'shape', type(z0))} and {getattr(z1, 'shape', type(z1))}")
    a = torch.as_tensor(alpha, dtype=torch.float64, device=z0.device)
    if a.ndim > 1:
        raise ValueError(f"alpha must be a float or a tensor [K], got shape {tuple(a.shape)}")
    u, v = z0.flatten().double(), z1.flatten().double()
    if u.norm() == 0 or v.norm() == 0:
        raise ValueError("z0 and z1 must be non-zero: a zero latent has no direction")
    u_hat, v_hat = u / u.norm(), v / v.norm()
    # θ = 2·atan(‖û − v̂‖ / ‖û + v̂‖): accurate at every angle (Kahan), unlike acos of the cosine.
    theta = 2 * torch.atan2((u_hat - v_hat).norm(), (u_hat + v_hat).norm())
    if torch.pi - theta < 1e-6:
        raise ValueError("z0 and z1 point in opposite directions: no unique great circle")
    if theta < 1e-6:
        c0, c1 = 1 - a, a
    else:
        c0 = torch.sin((1 - a) * theta) / torch.sin(theta)
        c1 = torch.sin(a * theta) / torch.sin(theta)
    out = c0.reshape(-1, 1) * u + c1.reshape(-1, 1) * v                   # [K or 1, numel]
    return out.reshape(tuple(a.shape) + tuple(z0.shape)).to(z0.dtype)
