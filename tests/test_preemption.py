"""Training killed with SIGKILL at random moments (also inside checkpoint writes) resumes
to exactly the parameters of an uninterrupted run, and every checkpoint on disk loads."""
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from run.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
FLAGS = ["--config=configs/toy_gmm.py", "--config.training.n_iters=80",
         "--config.training.snapshot_freq=20", "--config.training.snapshot_freq_for_preemption=4",
         "--config.training.snapshot_sampling=False", "--config.training.log_freq=10",
         "--config.training.eval_freq=1000", "--config.training.batch_size=64",
         "--config.model.dropout=0.1"]  # dropout: the global RNG must be restored too

# Runs main.py with checkpoint writes slowed down, announcing each write with a marker file,
# so that the test can kill the process while a temporary checkpoint file is half-done.
DRIVER = """
import sys, time, pathlib
import torch
real_save = torch.save
marker = pathlib.Path(sys.argv[1])
def slow_save(obj, f, *a, **k):
    marker.touch()
    real_save(obj, f, *a, **k)
    time.sleep(0.15)
    marker.unlink()
torch.save = slow_save  # checkpoints are written through torch.save
import main
sys.exit(main.run(["main.py"] + sys.argv[2:]))
"""


def _start(workdir, marker):
    return subprocess.Popen([sys.executable, "-c", DRIVER, str(marker), *FLAGS, f"--workdir={workdir}"],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))


def _final_params(workdir):
    state = load_checkpoint(workdir / "checkpoints-meta" / "checkpoint.pth")
    assert state["step"] == 80
    return state["model"], state["ema"]["shadow_params"]


def _all_checkpoints_load(workdir):
    for path in workdir.rglob("*.pth"):
        assert isinstance(load_checkpoint(path)["step"], int), path


@pytest.mark.slow
def test_sigkill_and_resume_matches_uninterrupted_run(tmp_path):
    reference = tmp_path / "reference"
    assert _start(reference, tmp_path / "ref_marker").wait(timeout=300) == 0
    expected_model, expected_ema = _final_params(reference)

    workdir, marker = tmp_path / "killed", tmp_path / "marker"
    rng = random.Random(0)
    kills, killed_in_write = 0, 0
    for trial in range(6):
        proc = _start(workdir, marker)
        if trial % 2 == 0:  # kill inside a checkpoint write
            deadline = time.time() + 120
            while not marker.exists() and proc.poll() is None and time.time() < deadline:
                time.sleep(0.005)
            time.sleep(rng.uniform(0.0, 0.1))
            killed_in_write += marker.exists()
        else:  # kill at a random moment
            time.sleep(rng.uniform(1.0, 4.0))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        marker.unlink(missing_ok=True)
        _all_checkpoints_load(workdir)
    assert kills >= 3 and killed_in_write >= 1
    assert _start(workdir, marker).wait(timeout=300) == 0
    _all_checkpoints_load(workdir)
    model, ema = _final_params(workdir)
    for name, value in expected_model.items():
        assert torch.equal(model[name], value), name
    for got, want in zip(ema, expected_ema):
        assert torch.equal(got, want)
