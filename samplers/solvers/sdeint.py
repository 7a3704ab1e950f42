"""Reverse-time SDE sampling with torchsde's Itô solvers (Song et al. 2021, eq. 6).

torchsde integrates forward in time, so the reverse SDE is written in u = T − t, increasing
from 0 to T − eps: with the reverse drift f̄ − g²·s and diffusion g at t = T − u,
    dy = −[f − g²·s](y, T − u) du + g(T − u) dW_u,  y(u) = x(T − u),
an Itô SDE with diagonal noise (g is shared by all coordinates and does not depend on y).
"""
from __future__ import annotations

import warnings
from typing import Optional, Sequence

import torch
import torchsde

from samplers.common import (CountedScore, Generator, ScoreFn, check_callback, check_eps,
                             check_num_steps, prior_sample, tweedie_denoise)
from samplers.options import DENOISE, EPS, atol, choice, flag, rtol, steps
from samplers.registry import SampleResult, register_sampler
from sde_lib import SDE

# torchsde's solvers for Itô SDEs with diagonal noise.
SDE_METHODS = ("euler", "milstein", "srk")


class _ReverseInU(torch.nn.Module):
    """The reverse-time SDE in u = T − t, on flat states `[B, d]` as torchsde wants them.

    torchsde evaluates the drift at (0, y0) once to check shapes before its first step does the
    same; the last evaluation is kept so that this costs no extra score evaluation.
    """
    noise_type = "diagonal"
    sde_type = "ito"

    def __init__(self, score_fn: ScoreFn, sde: SDE, shape: Sequence[int], callback=None):
        super().__init__()
        self.reverse, self.forward_sde = sde.reverse(score_fn), sde
        self.shape, self.T = shape, sde.T
        self._last = (None, None, None)
        self.callback, self.evaluations = callback, 0

    def _state_and_time(self, u: torch.Tensor, y: torch.Tensor):
        return y.view(self.shape), (self.T - u).to(y.dtype).expand(y.shape[0])

    def f_and_g(self, u: torch.Tensor, y: torch.Tensor):
        if self._last[0] is y and bool(self._last[1] == u):
            return self._last[2]
        x, t = self._state_and_time(u, y)
        if self.callback is not None:
            self.callback(self.evaluations, t.to(torch.float64), x, None)
        self.evaluations += 1
        drift, diffusion = self.reverse.sde(x, t)                        # one score evaluation
        result = -drift.flatten(1), diffusion[:, None].expand_as(y)
        self._last = (y, u, result)
        return result

    def f(self, u: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.f_and_g(u, y)[0]

    def g(self, u: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x, t = self._state_and_time(u, y)
        return self.forward_sde.sde(x, t)[1][:, None].expand_as(y)       # no score needed


def _entropy(generator: Optional[torch.Generator]) -> int:
    """A seed for a torchsde Brownian path, drawn from `generator` (None: the global RNG)."""
    device = generator.device if generator is not None else None
    return int(torch.randint(2 ** 31 - 1, (1,), generator=generator, device=device).item())


class _PerSampleBrownian(torchsde.BaseBrownian):
    """Brownian paths `[B, d]` with row i from its own BrownianInterval, seeded by generator i."""

    def __init__(self, paths: Sequence[torchsde.BrownianInterval]):
        self.paths = list(paths)

    def __call__(self, ta, tb=None, return_U=False, return_A=False):
        parts = [path(ta, tb, return_U=return_U, return_A=return_A) for path in self.paths]
        if isinstance(parts[0], tuple):
            return tuple(torch.cat(group) for group in zip(*parts))
        return torch.cat(parts)

    def __repr__(self) -> str:
        return f"_PerSampleBrownian({len(self.paths)} paths)"

    @property
    def dtype(self):
        return self.paths[0].dtype

    @property
    def device(self):
        return self.paths[0].device

    @property
    def shape(self):
        return torch.Size((len(self.paths),) + tuple(self.paths[0].shape[1:]))

    @property
    def levy_area_approximation(self):
        return self.paths[0].levy_area_approximation


def brownian_path(generator: Generator, shape, t1: float, dtype, device, levy_area: str,
                  dt: float):
    """W on [0, t1] of `shape` `[B, d]`: one path seeded from `generator`, or one per sample.

    `dt`, the expected step, lets torchsde build its interval tree for it (faster queries).
    """
    def interval(size, seed):
        return torchsde.BrownianInterval(t0=0.0, t1=t1, size=size, dtype=dtype, device=device,
                                         entropy=seed, levy_area_approximation=levy_area, dt=dt)
    if isinstance(generator, (list, tuple)):
        row = (1,) + tuple(shape[1:])
        return _PerSampleBrownian([interval(row, _entropy(g)) for g in generator])
    return interval(tuple(shape), _entropy(generator))


OPTIONS = dict(sde_method=choice("euler", SDE_METHODS, "torchsde's Itô solver"),
               num_steps=steps("the SDE's N"),
               adaptive=flag(False, "adaptive steps (rtol / atol)"), rtol=rtol(1e-5),
               atol=atol(1e-5), eps=EPS, denoise=DENOISE)


# Score evaluations per step of each torchsde solver (srk: its stages; measured, and checked by
# the tests against the counted NFE).
EVALS_PER_STEP = {"euler": 1, "milstein": 1, "srk": 9}


def _cost(options, num_steps: int) -> int:
    return num_steps * EVALS_PER_STEP[options["sde_method"]] + bool(options["denoise"])


@register_sampler("sdeint", OPTIONS, cost=_cost)
def sdeint_sampler(score_fn: ScoreFn, sde: SDE, shape: Sequence[int], *,
                   generator: Generator = None, device=None,
                   dtype: torch.dtype = torch.float32, sde_method: str = "euler",
                   num_steps: Optional[int] = None, adaptive: bool = False, rtol: float = 1e-5,
                   atol: float = 1e-5, eps: float = 1e-3, denoise: bool = True,
                   x_T: Optional[torch.Tensor] = None, callback=None) -> SampleResult:
    """Solve the reverse-time SDE from x_T ~ prior at T down to eps with `torchsde.sdeint`.

    Args:
        sde_method: "euler" (Euler–Maruyama, one score evaluation per step), "milstein" or "srk".
        num_steps: fixed steps of dt = (T − eps)/num_steps (default `sde.N`); with `adaptive`, dt
            is the first step and torchsde's error control (`rtol`, `atol`) picks the others.
        denoise: end with Tweedie's E[x_0 | x_eps].
    The Brownian path is a `torchsde.BrownianInterval` seeded from `generator` (one per sample
    for a list of per-sample generators), so runs reproduce.
    `x_T` `[B, ...]` replaces the prior draw; `callback(i, t, x, denoised)` runs at every state the
    solver evaluates the drift at (i counts them; denoised: Tweedie's E[x_0 | x_t]).
    Returns `shape` `[B, ...]` samples of p_eps (of p_0 with `denoise`) and the exact NFE.
    """
    check_callback(callback)
    eps, num_steps = check_eps(sde, eps), check_num_steps(sde, num_steps)
    score_fn = CountedScore(score_fn)
    x = prior_sample(sde, shape, generator, device, dtype, x_T)
    y0 = x.flatten(1)
    # Float64 times, and dt a hair over (T − eps)/num_steps so that rounding in torchsde's running
    # sum of steps cannot add a step of length ~1e-16 (and a score evaluation) at the end.
    us = torch.tensor([0.0, sde.T - eps], dtype=torch.float64, device=y0.device)
    dt = (sde.T - eps) / num_steps * (1 + 1e-9)
    levy_area = "space-time" if sde_method == "srk" else "none"
    brownian = brownian_path(generator, y0.shape, sde.T - eps, y0.dtype, y0.device, levy_area, dt)
    with torch.no_grad(), warnings.catch_warnings():
        # torchsde warns on adaptive Euler with non-additive noise; ours is additive (g(t) only).
        warnings.filterwarnings("ignore", message="Numerical solution is not guaranteed")
        ys = torchsde.sdeint(_ReverseInU(score_fn, sde, x.shape, callback), y0, us, bm=brownian,
                             method=sde_method, dt=dt, adaptive=adaptive,
                             rtol=rtol, atol=atol)
    x = ys[-1].view(x.shape)
    if denoise:
        x = tweedie_denoise(score_fn, sde, x, torch.full((x.shape[0],), eps, dtype=torch.float64,
                                                         device=x.device))
    return SampleResult(x, score_fn.nfe)
