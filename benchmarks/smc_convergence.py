"""SMC's finite-K bias against the exact posterior of its own chain, as the particles grow.

    python benchmarks/smc_convergence.py [--steps 200] [--ks 64 256 1024 4096] [--rows 32768]

MIXTURE_2D (tests/two_sample.py) on VP with the exact score, observed through its first
coordinate: noiseless x₁ = 1.1283 (both modes ½, in the tails of both) and noisy y = x₁ +
0.5·n = 0.8. Per K: the weighted estimate of P(x₂ < 0.25 | y) of each SMC run (K particles,
no denoising), averaged over rows/K independent runs (mean ± standard error), with resampling
(ess_threshold 0.5, the default) and without (0: sequential importance sampling). The
reference is the exact conditional of p_eps (`models.analytic`) and, for the noisy case, the
chain's own posterior: importance sampling of unconditional draws of the same chain
(`--chain-draws`, weights N(y; x₁, σ_y²)), which is what SMC converges to. Writes
`benchmarks/results/smc_convergence.md`.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import samplers  # noqa: E402
import sde_lib  # noqa: E402
from samplers.conditioning.operators import Mask  # noqa: E402
from two_sample import MIXTURE_2D  # noqa: E402

EPS, f64, MASK = 1e-3, torch.float64, Mask(torch.tensor([1.0, 0.0]))


def exact_probability(sde, y: float, noise_std: float) -> float:
    """P(x₂ < 0.25 | y) under p_eps's exact posterior."""
    diffused = MIXTURE_2D.diffused(EPS, sde)
    if noise_std == 0:
        law = diffused.conditional([1, 0], [y, 0.0])
        means, variances = law.means[:, -1], law.variances[:, -1]
    else:
        law = diffused.posterior([[1.0, 0.0]], [y], noise_std)
        means, variances = law.means[:, -1], law.covariances[:, -1, -1]
    below = torch.distributions.Normal(means, variances.sqrt()).cdf(torch.tensor(0.25, dtype=f64))
    return (law.weights * below).sum().item()


def chain_probability(sde, steps: int, y: float, noise_std: float, draws: int):
    """(estimate, standard error) of the chain's own P(x₂ < 0.25 | y) by importance sampling."""
    weights, below = [], []
    for part in range(math.ceil(draws / 50_000)):
        x = samplers.sample(MIXTURE_2D.score_fn(sde), sde, (50_000, 2), "pc",
                            predictor="reverse_diffusion", corrector="none", num_steps=steps,
                            denoise=False, dtype=f64,
                            generator=torch.Generator().manual_seed(100 + part)).x
        weights.append(torch.exp(-0.5 * ((x[:, 0] - y) / noise_std) ** 2))
        below.append((x[:, 1] < 0.25).double())
    w, f = torch.cat(weights), torch.cat(below)
    p = ((w * f).sum() / w.sum()).item()
    return p, ((w * (f - p)) ** 2).sum().sqrt().item() / w.sum().item()


def smc_probability(sde, steps: int, y: float, noise_std: float, k: int, runs: int,
                    threshold: float):
    """(mean, standard error, resamplings per run, seconds) of the runs' weighted estimates."""
    tick = time.perf_counter()
    result = samplers.condition(MIXTURE_2D.score_fn(sde), sde,
                                torch.tensor([[y, 0.0]], dtype=f64).expand(runs, 2), MASK,
                                noise_std=noise_std, method="smc", num_particles=k,
                                num_steps=steps, ess_threshold=threshold, denoise=False,
                                generator=torch.Generator().manual_seed(k))
    estimates = (result.log_weights.exp() * (result.particles[..., 1] < 0.25)).sum(1)
    return (estimates.mean().item(), estimates.std().item() / math.sqrt(runs),
            result.resampled.double().sum(0).mean().item(), time.perf_counter() - tick)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--ks", type=int, nargs="+", default=[64, 256, 1024, 4096])
    parser.add_argument("--rows", type=int, default=32768, help="particles per K, all runs")
    parser.add_argument("--chain-draws", type=int, default=400_000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    sde = sde_lib.VPSDE()
    lines = [f"# SMC's finite-K bias, MIXTURE_2D on VP, {args.steps} steps\n",
             f"`python benchmarks/smc_convergence.py {' '.join(sys.argv[1:])}`\n",
             "| case | reference | K | runs | ess_threshold | resamplings/run | "
             "P(x2 < 0.25) ± se | bias | wall s |", "|---|---|---|---|---|---|---|---|---|"]
    for y, noise_std in ((1.1283, 0.0), (0.8, 0.5)):
        case = f"x1={y:g}" if noise_std == 0 else f"noisy x1={y:g}, σ_y={noise_std:g}"
        reference = exact_probability(sde, y, noise_std)
        label = f"exact {reference:.4f}"
        if noise_std > 0:
            reference, se = chain_probability(sde, args.steps, y, noise_std, args.chain_draws)
            label += f", chain {reference:.4f} ± {se:.4f}"
        for threshold in (0.5, 0.0):
            for k in args.ks:
                runs = max(8, args.rows // k)
                mean, se, resamplings, wall = smc_probability(sde, args.steps, y, noise_std, k,
                                                              runs, threshold)
                lines.append(f"| {case} | {label} | {k} | {runs} | {threshold:g} | "
                             f"{resamplings:.0f} | {mean:.4f} ± {se:.4f} | "
                             f"{mean - reference:+.4f} | {wall:.0f} |")
                print(lines[-1], flush=True)
    out = ROOT / "benchmarks" / "results" / "smc_convergence.md"
    out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
