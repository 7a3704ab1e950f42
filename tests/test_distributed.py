"""torchrun with 2 CPU processes (gloo) against one process: same parameters, same bits/dim,
same samples, and one set of files."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
COMMON = ["--config=configs/toy_gmm.py", "--config.training.n_iters=6",
          "--config.training.snapshot_freq=3", "--config.training.snapshot_freq_for_preemption=3",
          "--config.training.log_freq=2", "--config.training.eval_freq=3",
          "--config.training.batch_size=16", "--config.training.num_snapshot_samples=6",
          "--config.sampling.num_steps=10", "--config.eval.batch_size=3",
          "--config.eval.bpd_num_examples=10", "--config.eval.divergence=exact",
          "--config.eval.num_samples=7", "--config.eval.enable_sampling=True"]


def _run(workdir, mode, nproc):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    prefix = [sys.executable, "main.py"] if nproc == 1 else [
        sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", "--master_port=0",
        "main.py"]
    result = subprocess.run([*prefix, *COMMON, f"--workdir={workdir}", f"--mode={mode}"], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]


def _files(workdir):
    return sorted(str(p.relative_to(workdir)) for p in workdir.rglob("*")
                  if p.is_file() and "tfevents" not in p.name)


@pytest.mark.slow
def test_two_processes_match_one(tmp_path):
    single, double = tmp_path / "one", tmp_path / "two"
    for mode in ("train", "eval"):
        _run(single, mode, 1)
        _run(double, mode, 2)
    # Parameters after the same global batches and seed, to float tolerance.
    a = torch.load(single / "checkpoints-meta" / "checkpoint.pth", weights_only=True)
    b = torch.load(double / "checkpoints-meta" / "checkpoint.pth", weights_only=True)
    assert a["step"] == b["step"] == 6
    for name, value in a["model"].items():
        torch.testing.assert_close(b["model"][name], value, rtol=1e-5, atol=1e-6)
    for x, y in zip(a["ema"]["shadow_params"], b["ema"]["shadow_params"]):
        torch.testing.assert_close(y, x, rtol=1e-5, atol=1e-6)
    # One set of files: rank 1 wrote nothing of its own.
    assert len(list((double / "tensorboard").glob("events.out.tfevents.*"))) == 1
    expected = [f.replace("_0of1", "_0of2") for f in _files(single)] + ["eval/bpd_progress_1of2.pth"]
    assert _files(double) == sorted(expected)
    # Sharded eval: same bits/dim on the same examples; samples identical.
    m1 = json.loads((single / "eval" / "metrics.json").read_text())
    m2 = json.loads((double / "eval" / "metrics.json").read_text())
    assert m1["num_examples"] == m2["num_examples"] == 10
    assert m2["bpd"] == pytest.approx(m1["bpd"], rel=1e-4)
    s1 = np.load(single / "eval" / "samples_6" / "samples.npz")["samples"]
    s2 = np.load(double / "eval" / "samples_6" / "samples.npz")["samples"]
    np.testing.assert_allclose(s2, s1, rtol=1e-4, atol=1e-5)
