"""Training throughput with 1 vs 2 processes on the CPU (torchrun, gloo).

    python benchmarks/distributed.py [--config configs/vp_digits.py] [--steps 60]

Each run trains `--steps` steps of the same config (same global batch) in a fresh workdir;
steps/s is read back from the run's TensorBoard `train/steps_per_sec` scalars, leaving out
the first logging interval (start-up). Prints a table with the speed-up ratio.
"""
import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

ROOT = Path(__file__).resolve().parents[1]


def steps_per_second(config: str, steps: int, nproc: int, batch_size: int) -> float:
    with tempfile.TemporaryDirectory() as workdir:
        launcher = [sys.executable, "main.py"] if nproc == 1 else [
            sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            "main.py"]
        flags = [f"--config={config}", f"--workdir={workdir}", "--mode=train",
                 f"--config.training.n_iters={steps}", f"--config.training.batch_size={batch_size}",
                 "--config.training.log_freq=10", "--config.training.eval_freq=100000",
                 "--config.training.snapshot_sampling=False",
                 f"--config.training.snapshot_freq={steps}",
                 f"--config.training.snapshot_freq_for_preemption={steps}"]
        threads = max(1, (os.cpu_count() or 2) // nproc)
        env = dict(os.environ, OMP_NUM_THREADS=str(threads))
        subprocess.run([*launcher, *flags], cwd=ROOT, env=env, check=True, capture_output=True)
        events = EventAccumulator(str(Path(workdir) / "tensorboard"))
        events.Reload()
        rates = [e.value for e in events.Scalars("train/steps_per_sec")][1:]
        return sum(rates) / len(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/vp_digits.py")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    one = steps_per_second(args.config, args.steps, 1, args.batch_size)
    two = steps_per_second(args.config, args.steps, 2, args.batch_size)
    print(f"config {args.config}, global batch {args.batch_size}, {args.steps} steps, "
          f"{os.cpu_count()} CPU cores (threads split between processes)")
    print(f"{'processes':>10} {'steps/s':>10} {'ratio':>7}")
    print(f"{1:>10} {one:>10.3f} {1.0:>7.2f}")
    print(f"{2:>10} {two:>10.3f} {two / one:>7.2f}")


if __name__ == "__main__":
    main()
