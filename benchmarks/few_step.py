"""Few steps by learning: a consistency student against the training-free samplers at the same
budgets, on the 2-D mixture toy (and on digits when given a teacher there).

    OMP_NUM_THREADS=1 python benchmarks/few_step.py [--toy-teacher DIR] [--runs DIR]
        [--n 2000] [--distill-args --config.distill.n_iters=2000 ...]
        [--methods cd ect] [--digits-teacher DIR [--n-digits 500]] [--skip-toy]
        [--out benchmarks/results/few_step]

Toy: the teacher is `--toy-teacher` (else `configs/toy_gmm.py` is trained into `--runs`); the
student is distilled from it with `main.py --mode distill` (its defaults plus `--distill-args`),
timed. Metric: the energy distance (Székely & Rizzo 2004) between `--n` samples of a method,
from prior draw A, and `--n` samples of the teacher's converged probability flow (RK45,
tolerance 1e-5), from an independent prior draw B; its floor is the converged flow from A
against B. Rows: the student at 1, 2, 4 evaluations (sampling.method="consistency"); every fast
training-free sampler of the project (ddim, dpm_solver 1–3, unipc, heun, on their default and
EDM steps) at 1, 2, 4, 5, 10 evaluations (a budget a method cannot meet is blank), and the best
of them per budget; the fitted steps at 5 and 10 (`--mode fit_steps` with
`sampling.time_schedule="fitted"`) where that mode exists, else a printed note.
Digits (`--digits-teacher`, a trained `configs/vp_digits.py` workdir): the same rows with the
Fréchet distance in the features of `evaluation.feature_fd`'s small classifier (the `fd` that
`--mode eval` reports for digits), `--n-digits` samples against the test images.
Writes `<out>.md` and `<out>.json`.
"""
from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import main as cli_main  # noqa: E402
import samplers  # noqa: E402
from cli.config_source import config_from_stored  # noqa: E402
from run.loading import load_ema_model  # noqa: E402
from run.stored_config import read_stored  # noqa: E402
from training.consistency_loss import DEFAULT_LR  # noqa: E402
from two_sample import energy_test  # noqa: E402

EPS = 1e-3
BUDGETS = (1, 2, 4, 5, 10)
STUDENT_BUDGETS = (1, 2, 4)
FITTED_BUDGETS = (5, 10)
TRAINING_FREE = {
    "ddim": ("ddim", {}), "ddim (edm steps)": ("ddim", dict(schedule="edm")),
    "dpm_solver-1": ("dpm_solver", dict(order=1)), "dpm_solver-2": ("dpm_solver", dict(order=2)),
    "dpm_solver-3": ("dpm_solver", dict(order=3)),
    "dpm_solver-2 (edm steps)": ("dpm_solver", dict(order=2, schedule="edm")),
    "unipc": ("unipc", {}), "unipc (edm steps)": ("unipc", dict(schedule="edm")),
    "heun": ("heun", {}),
}


def python(*argv: str) -> float:
    """Run `python main.py argv` (one thread); returns its wall time (s)."""
    start = time.perf_counter()
    subprocess.run([sys.executable, str(ROOT / "main.py"), *argv, "--threads=1"], check=True,
                   cwd=ROOT, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def load(workdir: Path):
    config = config_from_stored(read_stored(workdir / "config.json"))
    model, sde, step = load_ema_model(config, workdir, torch.device("cpu"))
    return config, model, sde, step


def score_of(model):
    def score(x, t):
        with torch.no_grad():
            return model(x.float(), t.float()).to(x.dtype)
    return score


def run_method(score, sde, x_T, method: str, nfe: int, **options):
    """(samples, NFE) of `method` at a budget of `nfe` evaluations; None where it cannot."""
    try:
        result = samplers.sample(score, sde, tuple(x_T.shape), method, x_T=x_T, nfe=nfe,
                                 dtype=torch.float64, eps=EPS,
                                 generator=torch.Generator().manual_seed(1), **options)
    except ValueError:
        return None
    return result.x, result.nfe


def energy(x, y) -> float:
    return energy_test(x, y, num_permutations=0)[0]


def fitted_rows(workdir: Path, score, sde, x_T, metric, lines):
    """The fitted steps at 5 and 10 evaluations, where `--mode fit_steps` exists: fitted in
    `workdir`, read back from `schedules/<method>_nfe<nfe>.json` (its "times")."""
    if "fit_steps" not in cli_main.MODES:
        lines.append("fitted steps: skipped (this branch has no --mode fit_steps)")
        return {}
    rows, seconds, method = {}, 0.0, "dpm_solver"
    for nfe in FITTED_BUDGETS:
        seconds += python(f"--workdir={workdir}", "--mode=fit_steps",
                          f"--config.sampling.method={method}", f"--config.sampling.nfe={nfe}")
        stored = json.loads((workdir / "schedules" / f"{method}_nfe{nfe}.json").read_text())
        result = samplers.sample(score, sde, tuple(x_T.shape), method, x_T=x_T,
                                 dtype=torch.float64, schedule=stored["times"])
        rows[nfe] = metric(result.x)
    lines.append(f"fitting wall time ({method}): {seconds:.1f} s for both budgets")
    return rows


def table(rows: dict, budgets, lines, unit: str) -> None:
    lines += ["", "| method | " + " | ".join(f"{unit} @ {b}" for b in budgets) + " |",
              "|---|" + "---:|" * len(budgets)]
    for name, values in rows.items():
        cells = [f"{values[b]:.3g}" if values.get(b) is not None else "" for b in budgets]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")


ICT_LEVEL = 0.821   # the 2-step level σ̄ of Song & Dhariwal 2023 (CIFAR-10), not fitted here


def student_rows(students: dict, sde, x_T, metric) -> dict:
    """The students (label -> workdir) at 1, 2, 4 evaluations on the sampler's default levels,
    and at 2 with the second level at σ̄ = `ICT_LEVEL`."""
    rows = {}
    level = sde.t_from_log_snr(torch.tensor([-2 * math.log(ICT_LEVEL)],
                                            dtype=torch.float64)).item()
    for label, workdir in students.items():
        _, student, _, step = load(workdir)
        runs = {k: dict(num_steps=k) for k in STUDENT_BUDGETS}
        for name, schedules in ((f"{label} student (step {step})", runs),
                                (f"{label} student, 2nd level at σ̄ = {ICT_LEVEL}",
                                 {2: dict(schedule=[sde.T, level, EPS])})):
            for k, options in schedules.items():
                x = samplers.sample(score_of(student), sde, tuple(x_T.shape), "consistency",
                                    x_T=x_T, eps=EPS, dtype=torch.float64,
                                    generator=torch.Generator().manual_seed(1), **options).x
                rows.setdefault(name, {})[k] = metric(x)
    return rows


def compare(teacher_dir: Path, students: dict, x_T_a, metric, unit: str, lines):
    """Rows of every method (students, training-free, fitted), the best training-free row."""
    _, teacher, sde, _ = load(teacher_dir)
    score = score_of(teacher)
    rows = student_rows(students, sde, x_T_a, metric)
    best = {}
    for name, (method, options) in TRAINING_FREE.items():
        for nfe in BUDGETS:
            out = run_method(score, sde, x_T_a, method, nfe, **options)
            if out is not None and out[1] == nfe:
                rows.setdefault(name, {})[nfe] = value = metric(out[0])
                if value < best.get(nfe, (float("inf"), ""))[0]:
                    best[nfe] = (value, name)
    rows["best training-free"] = {nfe: v for nfe, (v, _) in best.items()}
    fitted = fitted_rows(teacher_dir, score, sde, x_T_a, metric, lines)
    if fitted:
        rows["fitted steps (dpm_solver)"] = fitted
    table(rows, BUDGETS, lines, unit)
    lines.append("best training-free per budget: " + ", ".join(
        f"{nfe}: {name}" for nfe, (_, name) in sorted(best.items())))
    return rows, best


def toy(args, lines, records) -> None:
    teacher = args.toy_teacher or args.runs / "toy_teacher"
    if not (teacher / "config.json").exists():
        seconds = python("--config=configs/toy_gmm.py", f"--workdir={teacher}", "--mode=train")
        lines.append(f"toy teacher trained in {seconds:.0f} s")
    lines.append(f"## Toy mixture (configs/toy_gmm.py): teacher {teacher}")
    students, timings = distill_all(args, teacher, "toy", lines)
    _, model, sde, _ = load(teacher)
    x_T_a = sde.prior_sampling((args.n, 2), generator=torch.Generator().manual_seed(0),
                               dtype=torch.float64)
    x_T_b = sde.prior_sampling((args.n, 2), generator=torch.Generator().manual_seed(7),
                               dtype=torch.float64)   # the reference's own draw
    flow = [samplers.sample(score_of(model), sde, (args.n, 2), "ode", x_T=x, rtol=1e-5,
                            atol=1e-5, eps=EPS, dtype=torch.float64).x for x in (x_T_a, x_T_b)]
    lines.append(f"energy distance to the converged flow ({args.n} samples each); floor "
                 f"(the converged flow from another draw): {energy(flow[0], flow[1]):.3g}")
    rows, best = compare(teacher, students, x_T_a, lambda x: energy(x, flow[1]), "E", lines)
    for name, row in rows.items():
        if "student" in name and 2 in row:
            lines.append(f"goal (student at 2 evaluations within 0.01 of the converged flow), "
                         f"{name}: {'met' if row[2] <= 0.01 else 'NOT met'} ({row[2]:.3g})")
    records["toy"] = dict(rows=rows, distill_seconds=timings)


def distill_all(args, teacher: Path, name: str, lines):
    """Distil one student per `--methods` from `teacher` (timed); returns (label -> workdir,
    label -> seconds)."""
    students, timings = {}, {}
    for method in args.methods:
        student = args.runs / f"{name}_student_{method}"
        seconds = python(f"--workdir={student}", "--mode=distill",
                         f"--config.distill.teacher={teacher}",
                         f"--config.distill.method={method}", *args.distill_args)
        settings = read_stored(student / "config.json")["distill"]
        label = method.upper()
        students[label], timings[label] = student, seconds
        lr = settings["lr"] or DEFAULT_LR[method]
        lines.append(f"{label} distillation: {settings['n_iters']} steps, lr {lr:g}, "
                     f"{settings['loss']}" + (f", {settings['num_scales']} scales, teacher step "
                                             f"{settings['solver']}" if method == "cd" else "")
                     + f": wall time {seconds:.0f} s (1 thread)")
    return students, timings


def digits(args, lines, records) -> None:
    """The digits rows: Fréchet distance in the features of `evaluation.feature_fd`'s small
    classifier (what `--mode eval` reports for digits), against the test images."""
    from data import build_dataset, build_transform
    from evaluation.feature_fd import fd_metrics

    teacher = args.digits_teacher
    config, model, sde, step = load(teacher)
    lines += ["", f"## Digits: teacher {teacher} (step {step})"]
    students, timings = distill_all(args, teacher, "digits", lines)
    train, test = build_dataset(config.data, "train"), build_dataset(config.data, "test")
    transform = build_transform(config.data)
    classifier = args.runs / "fd_classifier.pt"

    def metric(x):
        return fd_metrics(transform.to_uint8(x.float()), train, test, classifier)[0]["fd"]
    shape = (args.n_digits, config.data.num_channels, config.data.image_size,
             config.data.image_size)
    x_T = sde.prior_sampling(shape, generator=torch.Generator().manual_seed(0),
                             dtype=torch.float64)
    flow = samplers.sample(score_of(model), sde, shape, "ode", x_T=x_T, rtol=1e-5, atol=1e-5,
                           eps=EPS, dtype=torch.float64)
    floor = fd_metrics(transform.to_uint8(flow.x.float()), train, test, classifier)[0]
    lines.append(f"FD in the features of evaluation/feature_fd.py's classifier, {args.n_digits} "
                 f"samples against the test images; floor (as many training images) "
                 f"{floor['fd_floor']:.3g}; converged flow (RK45, 1e-5, NFE {flow.nfe}) "
                 f"{floor['fd']:.3g}")
    rows, best = compare(teacher, students, x_T, metric, "FD", lines)
    for name, row in rows.items():
        if "student" in name and 2 in row and 10 in rows["best training-free"]:
            target = rows["best training-free"][10]
            lines.append(f"goal (student at 2 at or below the best training-free at 10, "
                         f"{target:.3g}), {name}: {'met' if row[2] <= target else 'NOT met'} "
                         f"({row[2]:.3g})")
    for label, seconds in timings.items():
        lines.append(f"goal (distillation under 30 minutes), {label}: "
                     f"{'met' if seconds < 1800 else 'NOT met'} ({seconds / 60:.1f} min)")
    records["digits"] = dict(rows=rows, distill_seconds=timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--toy-teacher", type=Path, default=None)
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "few_step")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--methods", nargs="+", default=["cd", "ect"])
    parser.add_argument("--distill-args", nargs="*", default=[])
    parser.add_argument("--digits-teacher", type=Path, default=None)
    parser.add_argument("--n-digits", type=int, default=500)
    parser.add_argument("--skip-toy", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/few_step")
    args = parser.parse_args()
    torch.set_num_threads(1)
    lines, records = [], {}
    if not args.skip_toy:
        toy(args, lines, records)
    if args.digits_teacher is not None:
        digits(args, lines, records)
    text = "\n".join(lines)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text(text + "\n")
    args.out.with_suffix(".json").write_text(json.dumps(records, indent=1, default=str))


if __name__ == "__main__":
    main()
