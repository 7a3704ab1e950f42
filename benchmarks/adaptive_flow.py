"""Adaptive probability-flow solvers against the converged flow: NFE for a given solver error.

    OMP_NUM_THREADS=1 python benchmarks/adaptive_flow.py [--n 500] [--sdes vp subvp ve]
        [--out benchmarks/results/adaptive_flow] [--likelihood]

On the exact score of the sharp 16-D mixture (`frontier_problems`), every solver integrates the
probability-flow ODE from the same x_T to eps = 1e-3 and ends with the Tweedie step; its error is
the RMS distance per coordinate of its samples to those of a converged solve from the same x_T
(DOP853, rtol = atol = 1e-10), so it measures the solver alone (no sampling noise). Rows: scipy's
RK45 ("ode"), the adaptive DPM-Solver-12 / -23 ("dpm_adaptive"; rtol and atol as Lu et al.'s
δ = max(atol, rtol·|x|)) and k-diffusion's `sample_dpm_adaptive` (skipped when absent) over a
range of tolerances.

With `--likelihood`, a second table: `log_likelihood` with the exact divergence by RK45 and by
the adaptive DPM-Solver-23 (`ode_method="dpm_solver_23"`) on 16 points of the 16-D test mixture
(`tests/two_sample.py`), NFE against |log p − exact| in nats per dimension, the exact value being
log p_eps(x) − log p_T(z) + prior_logp(z) at the flow's own end z (eps = 1e-5).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks"), str(ROOT / "tests")]

import samplers  # noqa: E402
from frontier_problems import DIM, EPS, MIXTURE, SDES, prior_draw  # noqa: E402
from peer_adapters import load_k_diffusion, run_k_diffusion  # noqa: E402

f64 = torch.float64
TOLERANCES = {"ode RK45": [(1e-3, 1e-3), (1e-4, 1e-4), (1e-5, 1e-5)],
              "dpm_adaptive 12": [(0.05, 0.0078), (1e-2, 1e-3), (1e-3, 1e-4), (1e-4, 1e-5)],
              "dpm_adaptive 23": [(0.05, 0.0078), (1e-2, 1e-3), (1e-3, 1e-4), (1e-4, 1e-5)],
              "k-diffusion dpm_adaptive": [(0.05, 0.0078), (1e-2, 1e-3), (1e-3, 1e-4),
                                           (1e-4, 1e-5)]}


def solve(name: str, score, sde, x_T, rtol: float, atol: float, k_sampling):
    """(samples, NFE) of solver `name` at (rtol, atol)."""
    shape = tuple(x_T.shape)
    if name == "ode RK45":
        result = samplers.sample(score, sde, shape, "ode", x_T=x_T, dtype=f64, eps=EPS,
                                 rtol=rtol, atol=atol)
    elif name.startswith("dpm_adaptive"):
        result = samplers.sample(score, sde, shape, "dpm_adaptive", x_T=x_T, dtype=f64, eps=EPS,
                                 order=3 if name.endswith("23") else 2, rtol=rtol, atol=atol)
    else:
        return run_k_diffusion(k_sampling, "dpm_adaptive", score, sde, x_T, EPS, None,
                               rtol=rtol, atol=atol)
    return result.x, result.nfe


def likelihood_table(sde_names) -> list:
    """Rows of the likelihood table (module docstring)."""
    from two_sample import MIXTURES
    mixture = MIXTURES[16]
    x = mixture.sample(16, torch.Generator().manual_seed(0))
    lines = ["", "| sde | likelihood solver | rtol = atol | NFE | error, nats/dim |",
             "|---|---|---:|---:|---:|"]
    for sde_name in sde_names:
        sde = SDES[sde_name]()
        for method in ("RK45", "dpm_solver_23"):
            for tol in (1e-3, 1e-4, 1e-5, 1e-6):
                result = samplers.log_likelihood(mixture.score_fn(sde), sde, x, divergence="exact",
                                                 ode_method=method, rtol=tol, atol=tol)
                exact = (mixture.log_prob(x, 1e-5, sde) - mixture.log_prob(result.z, sde.T, sde)
                         + sde.prior_logp(result.z))
                error = (result.logp - exact).abs().mean().item() / 16
                lines.append(f"| {sde_name} | {method} | {tol:g} | {result.nfe} | {error:.2e} |")
                print(lines[-1], file=sys.stderr)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--sdes", nargs="+", default=list(SDES), choices=list(SDES))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/adaptive_flow")
    parser.add_argument("--likelihood", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    k_sampling, why = load_k_diffusion()
    if k_sampling is None:
        print(f"skipping k-diffusion: {why}")
    lines = [f"Command: OMP_NUM_THREADS=1 python benchmarks/adaptive_flow.py --n {args.n} "
             f"--sdes {' '.join(args.sdes)}" + (" --likelihood" if args.likelihood else ""), "",
             "| sde | solver | rtol | atol | NFE | RMS distance to the converged flow |",
             "|---|---|---:|---:|---:|---:|"]
    for sde_name in args.sdes:
        sde = SDES[sde_name]()
        x_T, score = prior_draw(sde, args.n), MIXTURE.score_fn(sde)
        converged = samplers.sample(score, sde, (args.n, DIM), "ode", x_T=x_T, dtype=f64,
                                    eps=EPS, rtol=1e-10, atol=1e-10, ode_method="DOP853")
        lines.append(f"| {sde_name} | DOP853 (the converged flow) | 1e-10 | 1e-10 | "
                     f"{converged.nfe} | 0 |")
        for name, tolerances in TOLERANCES.items():
            if name.startswith("k-diffusion") and k_sampling is None:
                continue
            for rtol, atol in tolerances:
                x, nfe = solve(name, score, sde, x_T, rtol, atol, k_sampling)
                distance = (x.double() - converged.x).pow(2).mean().sqrt().item()
                lines.append(f"| {sde_name} | {name} | {rtol:g} | {atol:g} | {nfe} | "
                             f"{distance:.2e} |")
                print(lines[-1], file=sys.stderr)
    if args.likelihood:
        lines += likelihood_table(args.sdes)
    text = "\n".join(lines)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text(text + "\n")


if __name__ == "__main__":
    main()
