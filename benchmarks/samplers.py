"""Every sampler on every SDE: NFE, wall time, overhead per score evaluation, error.

    python benchmarks/samplers.py [--batch 64] [--channels 16] [--quality-samples 1000]
        [--threads 1] [--sdes vp vp_cosine subvp ve] [--methods pc ancestral ...] [--num-steps N]

Ground truth: a 3-component Gaussian mixture of 1×8×8 images (d = 64) with its exact score.
Timing: the score function is that exact score plus a small convolutional network
(`ConvScoreNet`: three 3×3 convolutions, 16 channels, a time embedding; ~1 ms per forward at
batch 64 on one CPU thread) whose output layer is zero, so the values stay exact while every
evaluation costs a network forward. The unit is the mean time of one evaluation of this score,
timed inside the run (`Timed`); overhead = wall / (NFE × unit) is the wall time over the time
spent in the score function. Error: a second run of the same sampler with the exact score alone
on `--quality-samples` samples, against as many exact samples of p_eps (eps = 1e-3, no final
denoising): Δlog p, the mean exact log p_eps of the samples minus that of the exact samples in
nats per dimension (± one standard error), and the p-values of the energy-distance permutation
tests of the sampler tests (`tests/two_sample.py`, on x and on log p; the tests fail a sampler
at p ≤ 5e-4).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import sde_lib  # noqa: E402
from models.analytic import GaussianMixture  # noqa: E402
from samplers import sample  # noqa: E402
from two_sample import energy_test, exact_samples  # noqa: E402

EPS = 1e-3
IMAGE = (1, 8, 8)
SDES = {"vp": sde_lib.VPSDE, "vp_cosine": lambda: sde_lib.VPSDE(schedule="cosine"),
        "subvp": sde_lib.subVPSDE, "ve": sde_lib.VESDE}
METHODS = ["pc", "ancestral", "reverse_diffusion", "euler_maruyama", "annealed_langevin", "ode",
           "sdeint"]


def image_mixture() -> GaussianMixture:
    """Three components over 1×8×8 images: means in [−0.6, 0.6], variances in [0.02, 0.1]."""
    generator = torch.Generator().manual_seed(0)
    d = IMAGE[0] * IMAGE[1] * IMAGE[2]
    means = 1.2 * (torch.rand(3, d, generator=generator, dtype=torch.float64) - 0.5)
    variances = 0.02 + 0.08 * torch.rand(3, d, generator=generator, dtype=torch.float64)
    return GaussianMixture([0.25, 0.35, 0.4], means, variances)


class ConvScoreNet(nn.Module):
    """Three 3×3 convolutions (SiLU, time embedding added after the first); zero output layer."""

    def __init__(self, channels: int = 16):
        super().__init__()
        self.inp = nn.Conv2d(IMAGE[0], channels, 3, padding=1)
        self.embed = nn.Linear(1, channels)
        self.mid = nn.Conv2d(channels, channels, 3, padding=1)
        self.out = nn.Conv2d(channels, IMAGE[0], 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        h = F.silu(self.inp(x) + self.embed(t[:, None].to(x.dtype))[:, :, None, None])
        return self.out(F.silu(self.mid(h)))


def timed_score(mixture: GaussianMixture, sde, net: nn.Module):
    """Exact score of p_t (images `[B, 1, 8, 8]`) plus the zero-output network's."""
    def score_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return mixture.score(x, t, sde) + net(x, t)
    return score_fn


class _BackwardStarts(torch.autograd.Function):
    """Identity on a score output; its backward runs first in a VJP and starts the clock."""

    @staticmethod
    def forward(ctx, output, timer):
        ctx.timer = timer
        return output.view_as(output)

    @staticmethod
    def backward(ctx, grad):
        ctx.timer.backward_started = time.perf_counter()
        return grad, None


class _BackwardEnds(torch.autograd.Function):
    """Identity on a score input; its backward runs last in a VJP and stops the clock."""

    @staticmethod
    def forward(ctx, inputs, timer):
        ctx.timer = timer
        return inputs.view_as(inputs)

    @staticmethod
    def backward(ctx, grad):
        ctx.timer.backward_time += time.perf_counter() - ctx.timer.backward_started
        ctx.timer.backward_calls += 1
        return grad, None


class Timed:
    """A score function (or a reference-style model) that times its own evaluations as it runs.

    Timing the unit during the run, rather than apart, keeps the overhead ratio honest on a
    shared CPU: other processes slow the score evaluations and the rest alike. Forwards are
    timed around the call; vector–Jacobian products through it between two identity autograd
    nodes placed at its output (first in the backward pass) and its input (last).
    """

    def __init__(self, fn):
        self.fn = fn
        self.forward_time = self.backward_time = 0.0
        self.forward_calls = self.backward_calls = 0
        self.backward_started = 0.0

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        differentiated = torch.is_grad_enabled() and x.requires_grad
        if differentiated:
            x = _BackwardEnds.apply(x, self)
        start = time.perf_counter()
        output = self.fn(x, t)
        self.forward_time += time.perf_counter() - start
        self.forward_calls += 1
        return _BackwardStarts.apply(output, self) if differentiated else output

    def eval(self):
        return self

    def unit(self) -> float:
        """Mean seconds of a forward, plus of a VJP when there were any."""
        unit = self.forward_time / max(self.forward_calls, 1)
        return unit + (self.backward_time / self.backward_calls if self.backward_calls else 0.0)


def quality(mixture: GaussianMixture, sde, method: str, n: int, options: dict):
    """(Δlog p per dim, its standard error, p-value on x, p-value on log p) for n samples."""
    d = mixture.dim
    result = sample(mixture.score_fn(sde), sde, (n, d), method, dtype=torch.float64,
                    denoise=False, generator=torch.Generator().manual_seed(1), **options)
    exact = exact_samples(mixture, sde, EPS, n, torch.Generator().manual_seed(2))
    logp, logp_exact = (mixture.log_prob(z, EPS, sde) for z in (result.x, exact))
    gap = (logp.mean() - logp_exact.mean()).item() / d
    standard_error = ((logp.var() + logp_exact.var()) / n).sqrt().item() / d
    p_x = energy_test(result.x, exact)[1]
    p_logp = energy_test(logp[:, None], logp_exact[:, None])[1]
    return gap, standard_error, p_x, p_logp


def run(args) -> None:
    torch.set_num_threads(args.threads)
    # Flush denormals: at VE's large σ the network's SiLU outputs underflow, and denormal
    # arithmetic would make its evaluations there several times slower than the unit.
    torch.set_flush_denormal(True)
    mixture = image_mixture()
    net = ConvScoreNet(args.channels).eval()
    options = {} if args.num_steps is None else {"num_steps": args.num_steps}
    print(f"d = {mixture.dim} (1×8×8), timing batch {args.batch}, ConvScoreNet({args.channels}), "
          f"{args.threads} thread(s), "
          f"quality on {args.quality_samples} samples vs exact; eps = {EPS}\n")
    print("| method | SDE | NFE | wall s | unit ms | overhead | Δlog p (nats/dim) | p (x, log p) |")
    print("|---|---|---:|---:|---:|---:|---:|---|")
    for method in args.methods:
        for name in args.sdes:
            sde = SDES[name]()
            method_options = {k: v for k, v in options.items()
                              if not (method == "ode" and k == "num_steps")}
            score_fn = Timed(timed_score(mixture, sde, net))
            with torch.no_grad():
                start = time.perf_counter()
                result = sample(score_fn, sde, (args.batch,) + IMAGE, method, denoise=False,
                                generator=torch.Generator().manual_seed(0), **method_options)
                wall = time.perf_counter() - start
            unit = score_fn.unit()
            gap, se, p_x, p_logp = quality(mixture, sde, method, args.quality_samples,
                                           method_options)
            print(f"| {method} | {name} | {result.nfe} | {wall:.2f} | {unit * 1e3:.2f} | "
                  f"{wall / (result.nfe * unit):.3f} | {gap:+.4f} ± {se:.4f} | "
                  f"{p_x:.3f}, {p_logp:.3f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--quality-samples", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--channels", type=int, default=16, help="width of ConvScoreNet")
    parser.add_argument("--sdes", nargs="+", default=list(SDES), choices=list(SDES))
    parser.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    parser.add_argument("--num-steps", type=int, default=None,
                        help="steps of the fixed-step methods (default: each SDE's N = 1000)")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
