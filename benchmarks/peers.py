"""The project's fast samplers beside k-diffusion, diffusers and the reference DPM-Solver.

    OMP_NUM_THREADS=1 python benchmarks/peers.py [--n 1500] [--nfe 5 10 20 50]
        [--sdes vp subvp ve] [--dpm-solver-path /work/peers/dpm-solver]
        [--out benchmarks/results/peers] [--hidden 256]

Problem and error (`frontier_problems`): a 16-D, 8-component Gaussian mixture with sharp modes,
diffused by VP, sub-VP or VE; every method starts from the same prior draw x_T of `--n` samples,
runs on the same exact score and returns E[x_0 | x_eps] (eps = 1e-3); error = the per-component
variance error against the exact distribution (its floor, the error of as many exact samples,
is printed). NFE counts every score evaluation, the final denoising one included; fixed-step
methods get the most steps that fit in each budget (a second-order k-diffusion method may end one
below it). Peers run with their recommended schedules (k-diffusion and diffusers: Karras et al.'s
ρ = 7 steps; the reference DPM-Solver: uniform log-SNR steps). Peers are optional (`pip install
.[bench]`; the reference DPM-Solver is a checkout outside the repository): an absent one is
skipped with one line.

Timing, in the same run: the score is the exact one plus a small MLP (`--hidden` units, zero
output layer, so values stay exact) standing in for a network; the time spent inside the score
function is measured around every call. overhead = wall / time in the score (1.00: a sampler
that costs nothing beyond its evaluations); µs/NFE = (wall − time in the score) / NFE. At the
default 1500 samples the exact mixture's score dominates (~20 ms per evaluation on a loaded
2-core machine); fewer samples (`--n`) give the ratios at a cheaper score.
Writes `<out>.md` (the tables), `<out>.json` (every record) and `<out>.png` (error against NFE).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

import samplers  # noqa: E402
from frontier_problems import DIM, EPS, MIXTURE, SDES, exact_floor, prior_draw, variance_error  # noqa: E402,E501
from peer_report import best_by_budget, plot, tables  # noqa: E402
from peer_adapters import (load_diffusers, load_dpm_solver, load_k_diffusion,  # noqa: E402
                           run_diffusers, run_dpm_solver_reference, run_k_diffusion)
from samplers.fitted_schedule import fit_schedule  # noqa: E402

f64 = torch.float64


class TimedScore:
    """The exact mixture score plus a zero-output MLP, timing every call (seconds in `spent`)."""

    def __init__(self, sde, hidden: int):
        self.exact = MIXTURE.score_fn(sde)
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(DIM + 1, hidden), nn.SiLU(), nn.Linear(hidden, hidden),
                                 nn.SiLU(), nn.Linear(hidden, DIM))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)
        self.spent, self.calls = 0.0, 0

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        start = time.perf_counter()
        with torch.no_grad():
            inputs = torch.cat([x.float(), t.float().expand(x.shape[:1])[:, None]], 1)
            out = self.exact(x, t) + self.net(inputs).to(x.dtype)
        self.spent += time.perf_counter() - start
        self.calls += 1
        return out


# A runner: (score_fn, sde, x_T, nfe or None) -> (denoised samples, NFE, extra note).
Runner = Callable[..., tuple]


def project(method: str, **options) -> Runner:
    def run(score_fn, sde, x_T, nfe):
        steps = {} if nfe is None else {"num_steps": nfe - 1}
        result = samplers.sample(score_fn, sde, tuple(x_T.shape), method, x_T=x_T, dtype=f64,
                                 generator=torch.Generator().manual_seed(1), eps=EPS,
                                 **steps, **options)
        return result.x, result.nfe, ""
    return run


def project_fitted(method: str, pilot: int = 64, **options) -> Runner:
    """`method` on a schedule fitted by a pilot run on the first `pilot` samples; the pilot's
    evaluations are reported apart (a schedule is fitted once per model and step count)."""
    def run(score_fn, sde, x_T, nfe):
        fitted = fit_schedule(score_fn, sde, (pilot,) + tuple(x_T.shape[1:]), nfe - 1, eps=EPS,
                              dtype=f64, x_T=x_T[:pilot])
        result = samplers.sample(score_fn, sde, tuple(x_T.shape), method, x_T=x_T, dtype=f64,
                                 eps=EPS, schedule=fitted.times, **options)
        return result.x, result.nfe, f"pilot {fitted.nfe} NFE on {pilot}"
    return run


def project_ode(**options) -> Runner:
    def run(score_fn, sde, x_T, nfe):
        result = samplers.sample(score_fn, sde, tuple(x_T.shape), "ode", x_T=x_T, dtype=f64,
                                 eps=EPS, **options)
        return result.x, result.nfe, ""
    return run


def k_diffusion(module, name: str, **options) -> Runner:
    def run(score_fn, sde, x_T, nfe):
        x, used = run_k_diffusion(module, name, score_fn, sde, x_T, EPS, nfe, **options)
        return x, used, ""
    return run


def diffusers(module, name: str, **config) -> Runner:
    def run(score_fn, sde, x_T, nfe):
        x, used = run_diffusers(module, name, score_fn, sde, x_T, EPS, nfe, **config)
        return x, used, ""
    return run


def reference(module, **options) -> Runner:
    def run(score_fn, sde, x_T, nfe):
        with contextlib.redirect_stdout(io.StringIO()):   # it prints the adaptive solver's NFE
            x, used = run_dpm_solver_reference(module, score_fn, sde, x_T, EPS, nfe, **options)
        return x, used, ""
    return run


def project_methods() -> Dict[str, Runner]:
    return {
        "ddim (logsnr)": project("ddim"),
        "dpm_solver 2M": project("dpm_solver", order=2),
        "dpm_solver 3M": project("dpm_solver", order=3),
        "unipc bh1 p2": project("unipc", order=2, variant="bh1"),
        "unipc bh2 p2": project("unipc", order=2, variant="bh2"),
        "unipc bh1 p3": project("unipc", order=3, variant="bh1"),
        "unipc bh2 p3": project("unipc", order=3, variant="bh2"),
        "unipc bh2 p2 fitted": project_fitted("unipc", order=2, variant="bh2"),
        "dpm_solver_sde 2M": project("dpm_solver_sde", order=2),
        "dpm_solver_sde 3M": project("dpm_solver_sde", order=3),
    }


def peer_methods(args) -> Dict[str, Runner]:
    """The installed peers' fixed-step methods; absent peers are reported with one line."""
    methods = {}
    k_sampling, why = load_k_diffusion()
    if k_sampling is None:
        print(f"skipping k-diffusion: {why}")
    else:
        for name in ("euler", "heun", "dpm_2", "dpmpp_2m", "dpmpp_2m_sde", "dpmpp_3m_sde"):
            methods[f"k-diffusion {name}"] = k_diffusion(k_sampling, name)
        methods["k-diffusion dpm_fast"] = k_diffusion(k_sampling, "dpm_fast")
    hf, why = load_diffusers()
    if hf is None:
        print(f"skipping diffusers: {why}")
    else:
        karras = dict(use_karras_sigmas=True)
        methods["diffusers DPM++2M"] = diffusers(hf, "DPMSolverMultistepScheduler", **karras)
        methods["diffusers DPM++2M SDE"] = diffusers(hf, "DPMSolverMultistepScheduler",
                                                     algorithm_type="sde-dpmsolver++", **karras)
        methods["diffusers UniPC bh2"] = diffusers(hf, "UniPCMultistepScheduler", **karras)
        methods["diffusers DEIS"] = diffusers(hf, "DEISMultistepScheduler", **karras)
    dpm, why = load_dpm_solver(args.dpm_solver_path)
    if dpm is None:
        print(f"skipping the reference DPM-Solver: {why}")
    else:
        methods["DPM-Solver ref 2M"] = reference(dpm, order=2)
        methods["DPM-Solver ref 3M"] = reference(dpm, order=3)
    return methods


def adaptive_methods(args) -> Dict[str, Runner]:
    methods = {"dpm_adaptive 23": project("dpm_adaptive", order=3),
               "dpm_adaptive 12": project("dpm_adaptive", order=2),
               "ode RK45 tol 1e-2": project_ode(rtol=1e-2, atol=1e-2),
               "ode RK45 tol 1e-5": project_ode(rtol=1e-5, atol=1e-5)}
    k_sampling, _ = load_k_diffusion()
    if k_sampling is not None:
        methods["k-diffusion dpm_adaptive"] = k_diffusion(k_sampling, "dpm_adaptive")
    dpm, _ = load_dpm_solver(args.dpm_solver_path)
    if dpm is not None:
        methods["DPM-Solver ref adaptive 3"] = reference(dpm, order=3)
    return methods


def measure(runner: Runner, sde, x_T, nfe: Optional[int], hidden: int) -> dict:
    """Run once (after a warm-up run on a few samples, in `run_all`); error, NFE, overhead ratio
    and µs of overhead per NFE (or the failure)."""
    score = TimedScore(sde, hidden)
    start = time.perf_counter()
    try:
        x, used, note = runner(score, sde, x_T, nfe)
    except Exception as error:   # a peer failing on a problem is a result, not a crash
        return dict(error=float("nan"), nfe=score.calls, note=f"failed: {error}"[:120])
    wall = time.perf_counter() - start
    return dict(error=variance_error(x, sde), nfe=used, overhead=wall / score.spent,
                us_per_nfe=1e6 * (wall - score.spent) / max(used, 1), note=note)


def run_all(args) -> List[dict]:
    records = []
    fixed = {**project_methods(), **peer_methods(args)}
    adaptive = adaptive_methods(args)
    for sde_name in args.sdes:
        sde = SDES[sde_name]()
        x_T = prior_draw(sde, args.n)
        floor = exact_floor(sde, args.n)
        records.append(dict(sde=sde_name, method="exact samples (floor)", budget=None,
                            error=floor, nfe=0, note=""))
        warm_up = [(r, min(args.nfe)) for r in fixed.values()] + [(r, None) for r in adaptive.values()]
        for runner, nfe in warm_up:   # first calls import modules and fill caches
            with contextlib.suppress(Exception):
                runner(TimedScore(sde, args.hidden), sde, x_T[:8], nfe)
        for name, runner in fixed.items():
            for nfe in args.nfe:
                records.append(dict(sde=sde_name, method=name, budget=nfe,
                                    **measure(runner, sde, x_T, nfe, args.hidden)))
        for name, runner in adaptive.items():
            records.append(dict(sde=sde_name, method=name, budget=None,
                                **measure(runner, sde, x_T, None, args.hidden)))
        print(f"{sde_name}: done", file=sys.stderr)
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1500)
    parser.add_argument("--nfe", type=int, nargs="+", default=[5, 10, 20, 50])
    parser.add_argument("--sdes", nargs="+", default=list(SDES), choices=list(SDES))
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--dpm-solver-path", default="/work/peers/dpm-solver")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/peers")
    args = parser.parse_args()
    torch.set_num_threads(1)
    records = run_all(args)
    text = (f"Command: OMP_NUM_THREADS=1 python benchmarks/peers.py --n {args.n} --nfe "
            f"{' '.join(map(str, args.nfe))} --sdes {' '.join(args.sdes)} --hidden {args.hidden}\n"
            + tables(records, args.nfe) + "\n"
            + best_by_budget(records, args.nfe, set(project_methods())))
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text(text + "\n")
    args.out.with_suffix(".json").write_text(json.dumps(records, indent=1))
    plot(records, args.out.with_suffix(".png"), set(project_methods()))


if __name__ == "__main__":
    main()
