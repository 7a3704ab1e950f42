"""What training's snapshot grids cost: a short digits run (`configs/vp_digits.py`, 200 steps
by default) with two snapshots (every `--steps / 2` steps) against the same run without them.

    python benchmarks/snapshot_cost.py [--steps 200] [--threads 0] [--samplers dpm_solver sampling]

Each row trains from scratch in a fresh temporary workdir through `main.run` (the command line's
code path) and times the whole run, checkpoints included; "sampling" is the config's own
sampler (predictor–corrector, 500 steps on digits), the default before the fast snapshot
sampler. Goal: the default (`dpm_solver`) under 1.5× the run without snapshots.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def timed_run(steps: int, threads: int, snapshot_sampler: str) -> float:
    """Seconds of one training run of `steps` steps (two snapshots unless `snapshot_sampler` is
    "none")."""
    import main

    with tempfile.TemporaryDirectory() as workdir:
        flags = [f"--config={ROOT / 'configs' / 'vp_digits.py'}", f"--workdir={workdir}",
                 "--mode=train", f"--threads={threads}", f"--config.training.n_iters={steps}",
                 f"--config.training.snapshot_freq={steps // 2}",
                 f"--config.training.snapshot_freq_for_preemption={steps // 2}"]
        if snapshot_sampler == "none":
            flags.append("--config.training.snapshot_sampling=False")
        else:
            flags.append(f"--config.training.snapshot_sampler={snapshot_sampler}")
        tick = time.perf_counter()
        status = main.run(["main.py", *flags])
        seconds = time.perf_counter() - tick
        if status != 0:
            raise SystemExit(f"the run with snapshot_sampler={snapshot_sampler} failed ({status})")
        return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: main.py's)")
    parser.add_argument("--samplers", nargs="+", default=["dpm_solver", "sampling"])
    args = parser.parse_args()
    base = timed_run(args.steps, args.threads, "none")
    rows = [("none", base)] + [(name, timed_run(args.steps, args.threads, name))
                               for name in args.samplers]
    print(f"\nconfigs/vp_digits.py, {args.steps} training steps, snapshots at "
          f"{args.steps // 2} and {args.steps}")
    print(f"| snapshot sampler | wall s | × without snapshots |\n|---|---|---|")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.1f} | {seconds / base:.2f} |")


if __name__ == "__main__":
    main()
