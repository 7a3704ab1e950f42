"""Learned step placement on a trained model: fitted times against every training-free schedule.

    OMP_NUM_THREADS=1 python benchmarks/fitted_steps.py --workdir runs/vp_digits [--nfe 5]
        [--n 500] [--fit ddim dpm_solver unipc] [--out benchmarks/results/fitted_steps_digits]
    OMP_NUM_THREADS=1 python benchmarks/fitted_steps.py --workdir runs/toy_gmm \
        --out benchmarks/results/fitted_steps_toy

The score is the EMA network of `--workdir` (its config.json). Every method starts from one
prior draw of `--n` samples and is measured by the RMS distance per coordinate to the converged
probability-flow ODE from the same x_T (RK45, 1e-5) and by a distance of the sample sets: for
images below 32×32 `fd` (`evaluation.feature_fd`: the Fréchet distance in a small classifier's
features against the test split; its floor is the value of as many training images), for
vectors (`configs/toy_gmm.py`) the energy distance (Székely & Rizzo 2004) to the converged
flow's samples (`tests/two_sample.energy_test`). The fitted rows run `fit_steps` with the
`fit_steps` defaults of `configs/default.py` (its own teacher pairs, seeded apart from the draw
measured here) and report its wall time. Nothing is written into the workdir.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import ml_collections
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import samplers  # noqa: E402
from data import build_dataset, build_transform  # noqa: E402
from evaluation.feature_fd import fd_metrics  # noqa: E402
from evaluation.fitted_steps import SETTINGS  # noqa: E402
from run.loading import load_ema_model  # noqa: E402
from samplers.learned_steps import fit_steps  # noqa: E402
from two_sample import energy_test  # noqa: E402

# Training-free candidates: (method, options), each at the budget.
CANDIDATES = {
    "ddim (logsnr)": ("ddim", {}), "ddim (edm)": ("ddim", {"schedule": "edm"}),
    "ddim (quadratic)": ("ddim", {"schedule": "quadratic"}),
    "dpm_solver 2M (logsnr)": ("dpm_solver", {}),
    "dpm_solver 2M (edm)": ("dpm_solver", {"schedule": "edm"}),
    "dpm_solver 3M (logsnr)": ("dpm_solver", {"order": 3}),
    "dpm_solver 3M (edm)": ("dpm_solver", {"order": 3, "schedule": "edm"}),
    "unipc bh2 p2 (logsnr)": ("unipc", {}), "unipc bh2 p2 (edm)": ("unipc", {"schedule": "edm"}),
    "heun (edm)": ("heun", {}),
    "dpm_solver_sde 2M (edm)": ("dpm_solver_sde", {"schedule": "edm"}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--nfe", type=int, default=5)
    parser.add_argument("--fit", nargs="+", default=["ddim", "dpm_solver", "unipc"])
    parser.add_argument("--out", type=Path,
                        default=ROOT / "benchmarks/results/fitted_steps_digits")
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = ml_collections.ConfigDict(json.loads((args.workdir / "config.json").read_text()))
    model, sde, step = load_ema_model(config, args.workdir, torch.device("cpu"))
    transform = build_transform(config.data)
    train, test = build_dataset(config.data, "train"), build_dataset(config.data, "test")
    cache = Path(tempfile.mkdtemp()) / "fd_classifier.pth"
    images = config.model.name != "mlp"
    shape = (args.n,) + ((config.data.num_channels, config.data.image_size,
                          config.data.image_size) if images else (config.data.dim,))
    x_T = sde.prior_sampling(shape, generator=torch.Generator().manual_seed(12345))
    converged = samplers.sample(model, sde, shape, "ode", x_T=x_T, rtol=1e-5, atol=1e-5)
    metric = "fd" if images else "energy distance to the converged flow"

    def measure(x):
        rms = (x.double() - converged.x.double()).pow(2).mean().sqrt().item()
        if not images:
            return {"fd": energy_test(x.double(), converged.x.double(), 0)[0]}, rms
        metrics, _ = fd_metrics(transform.to_uint8(x), train, test, cache)
        return metrics, rms

    lines = [f"{args.workdir} at step {step}; {args.n} samples from one prior draw",
             f"converged probability-flow ODE (RK45, 1e-5): NFE {converged.nfe}"]
    if images:
        lines[0] += (f"; fd in the features of `evaluation.feature_fd` against the test split "
                     f"(floor {measure(converged.x)[0]['fd_floor']:.3g})")
        lines[1] += f", fd {measure(converged.x)[0]['fd']:.3g}"
    lines += ["", f"| method @ NFE {args.nfe} | NFE | {metric} | RMS to the converged flow | "
              f"fit seconds |", "|---|---:|---:|---:|---:|"]
    records = []

    def row(name, result, seconds=None):
        metrics, rms = measure(result.x)
        records.append(dict(method=name, nfe=result.nfe, distance=metrics["fd"], rms=rms,
                            fit_seconds=seconds))
        lines.append(f"| {name} | {result.nfe} | {metrics['fd']:.3g} | {rms:.3g} | "
                     + ("" if seconds is None else f"{seconds:.0f}") + " |")
        print(lines[-1], file=sys.stderr)
    for name, (method, options) in CANDIDATES.items():
        row(name, samplers.sample(model, sde, shape, method, x_T=x_T, nfe=args.nfe,
                                  generator=torch.Generator().manual_seed(1), **options))
    for method in args.fit:
        tick = time.perf_counter()
        learned = fit_steps(model, sde, (SETTINGS["num_samples"],) + shape[1:], method,
                            args.nfe, num_holdout=SETTINGS["num_holdout"],
                            iterations=SETTINGS["n_iters"], lr=SETTINGS["lr"],
                            delta=SETTINGS["delta"], tolerance=SETTINGS["tolerance"])
        seconds = time.perf_counter() - tick
        row(f"{method} fitted (from {learned.start})",
            samplers.sample(model, sde, shape, method, x_T=x_T, schedule=learned.times,
                            generator=torch.Generator().manual_seed(1)), seconds)
    text = "\n".join(lines)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text(text + "\n")
    args.out.with_suffix(".json").write_text(json.dumps(records, indent=1))


if __name__ == "__main__":
    main()
