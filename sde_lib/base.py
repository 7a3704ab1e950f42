"""The abstract forward SDE and its reverse-time / probability-flow counterpart.

Conventions (Song et al. 2021, "Score-Based Generative Modeling through SDEs"):
time runs from 0 (data) to `T` (prior); the forward SDE is dx = f(x, t) dt + g(t) dw;
`t` is a float tensor of shape `[B]`; `x` is any shape `[B, ...]`; `std` is a standard
deviation (never a variance); log-densities are in nats.
"""
from __future__ import annotations

import abc
import math
from typing import Optional, Sequence, Tuple

import torch

from sde_lib.score_fn import ScoreFn
from sde_lib.utils import append_dims, batch_sum, check_int, randn


class SDE(abc.ABC):
    """A forward SDE with a Gaussian perturbation kernel x_t = mean_coeff(t)·x_0 + std(t)·z.

    Subclasses define `T`, `sde`, `marginal_coeffs`, `prior_sampling`, `prior_logp`,
    `t_from_log_snr`, and optionally a `discretize` for their own discrete chain.
    An SDE holds no device: tables live on the CPU and follow `x` / `t` when used.
    """

    def __init__(self, N: int):
        self.N = check_int("N", N)

    @property
    @abc.abstractmethod
    def T(self) -> float:
        """End time of the forward process."""

    @abc.abstractmethod
    def sde(self, x: torch.Tensor, t: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Drift f(x, t) shaped like `x`, and diffusion g(t) of shape `[B]`."""

    @abc.abstractmethod
    def marginal_coeffs(self, t: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Mean coefficient a(t) and std σ(t) (both `[B]`) of p_0t(x_t | x_0) = N(a·x_0, σ²I)."""

    def sigma_bar(self, t: torch.Tensor) -> torch.Tensor:
        """σ̄(t) = σ(t)/a(t) `[B]`: the noise level of x_t/a(t) = x_0 + σ̄·n, EDM's σ (Karras et
        al. 2022, eq. 4 with s = a)."""
        mean_coeff, std = self.marginal_coeffs(t)
        return std / mean_coeff

    def marginal_prob(self, x0: torch.Tensor, t: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Mean (shaped like `x0`) and std (`[B]`) of the perturbation kernel p_0t(x_t | x_0)."""
        mean_coeff, std = self.marginal_coeffs(t)
        return append_dims(mean_coeff, x0.ndim) * x0, std

    @abc.abstractmethod
    def prior_sampling(self, shape: Sequence[int], generator: Optional[torch.Generator] = None,
                       device=None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Draw x_T from the prior p_T that the forward process is designed to reach."""

    @abc.abstractmethod
    def prior_logp(self, z: torch.Tensor) -> torch.Tensor:
        """Log-density of the prior at `z`, in nats, shape `[B]`."""

    def log_snr(self, t: torch.Tensor) -> torch.Tensor:
        """λ(t) = log(a(t)² / σ(t)²), decreasing in t."""
        mean_coeff, std = self.marginal_coeffs(t)
        return 2 * (torch.log(mean_coeff) - torch.log(std))

    @abc.abstractmethod
    def t_from_log_snr(self, lam: torch.Tensor) -> torch.Tensor:
        """Inverse of `log_snr`."""

    def transition_coeffs(self, s: torch.Tensor,
                          t: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Ratio r and std v^½ (both `[B]`) of the transition x_t | x_s ~ N(r·x_s, v·I), s ≤ t.

        Exact for every SDE with an affine drift (all of ours): x_t = a_t·x_0 + σ_t·z and
        x_s = a_s·x_0 + σ_s·z' give r = a_t/a_s and v = σ_t² − r²σ_s², written as
        v = σ_t²·(1 − exp(λ_t − λ_s)) with λ = `log_snr` so that it stays accurate as s → t.
        """
        mean_coeff_s, _ = self.marginal_coeffs(s)
        mean_coeff_t, std_t = self.marginal_coeffs(t)
        var_fraction = -torch.expm1(self.log_snr(t) - self.log_snr(s))
        # s = t gives ∞ − ∞ when λ_s = ∞ (VP at s = 0); the kernel is then the identity.
        var_fraction = torch.where(s < t, var_fraction, torch.zeros_like(var_fraction))
        return mean_coeff_t / mean_coeff_s, std_t * torch.sqrt(var_fraction.clamp(min=0))

    def ancestral_variance(self, s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Noise variance `[B]` of an ancestral step from x_t back to x_s, s ≤ t.

        Any value between the posterior variance of q(x_s | x_t, x_0), σ_s²·v/σ_t² (exact when
        the data is a point), and the transition's own v (exact when p_t = N(0, I) for all t)
        gives a consistent sampler. Default: the posterior, SMLD's choice for VE (Song et al.
        2021, App. F). VP and sub-VP take v, DDPM's σ² = β (Ho et al. 2020; Song et al. eq. 47).
        """
        _, std = self.transition_coeffs(s, t)
        _, std_s = self.marginal_coeffs(s)
        _, std_t = self.marginal_coeffs(t)
        return (std * std_s / std_t) ** 2

    def timestep_index(self, t: torch.Tensor) -> torch.Tensor:
        """Index i ∈ {0, …, N-1} of the discrete chain at time t (t_i = i·T/(N-1), truncated)."""
        return (t * (self.N - 1) / self.T).long().clamp(0, self.N - 1)

    def discrete_marginal_coeffs(self, index: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Mean coefficient and std (`[B]`, float64) of the discrete chain's kernel at `index`.

        Default: the continuous kernel at t_i = i·T/(N−1); VP and VE override it with their
        DDPM / SMLD tables.
        """
        t = index.to(torch.float64) * self.T / max(self.N - 1, 1)
        return self.marginal_coeffs(t)

    def discretize(self, x: torch.Tensor, t: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """One forward step of the discrete chain: x_{i+1} = x_i + f + G·z, with G of shape `[B]`.

        Default: Euler–Maruyama with step T/N.
        """
        dt = self.T / self.N
        drift, diffusion = self.sde(x, t)
        return drift * dt, diffusion * math.sqrt(dt)

    def reverse(self, score_fn: ScoreFn, probability_flow: bool = False) -> "ReverseSDE":
        """The reverse-time SDE (Song et al. 2021, eq. 6) or probability-flow ODE (eq. 13)."""
        return ReverseSDE(self, score_fn, probability_flow)


class ReverseSDE:
    """Reverse of `forward` given a score: drift f − g²·s (SDE) or f − ½g²·s (ODE, g → 0).

    Arguments keep forward time (0 → T); a step backwards from t to t − dt is
    x ← x − drift·dt + diffusion·√dt·z, and with `discretize`: x ← x − f + G·z.
    """

    def __init__(self, forward: SDE, score_fn: ScoreFn, probability_flow: bool = False):
        self.forward = forward
        self.score_fn = score_fn
        self.probability_flow = probability_flow
        self.N = forward.N
        self.T = forward.T

    def _reverse(self, x, t, drift, diffusion):
        weight = 0.5 if self.probability_flow else 1.0
        score = self.score_fn(x, t)
        drift = drift - append_dims(diffusion ** 2, x.ndim) * score * weight
        if self.probability_flow:
            diffusion = torch.zeros_like(diffusion)
        return drift, diffusion

    def sde(self, x: torch.Tensor, t: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Reverse drift (shaped like `x`) and diffusion (`[B]`; zero for the ODE)."""
        return self._reverse(x, t, *self.forward.sde(x, t))

    def discretize(self, x: torch.Tensor, t: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Reverse step of the forward chain: f − G²·s (×½ for the ODE) and G (`[B]`)."""
        return self._reverse(x, t, *self.forward.discretize(x, t))


def standard_normal_logp(z: torch.Tensor, std: float = 1.0) -> torch.Tensor:
    """log N(z; 0, std²I) in nats, summed over all but the batch dim: `[B, ...] -> [B]`."""
    num_dims = z[0].numel()
    return -0.5 * num_dims * math.log(2 * math.pi * std ** 2) - batch_sum(z ** 2) / (2 * std ** 2)


def sample_standard_normal(shape, generator, device, dtype) -> torch.Tensor:
    """N(0, I) noise of `shape`, on the generator's device unless `device` is given.

    `generator` may be a list of per-sample generators (see `sde_lib.utils.randn`).
    """
    return randn(shape, generator, device, dtype)
