"""Runs stopped at random moments by SIGTERM (what SLURM and Kubernetes send before
preemption), SIGINT (Ctrl-C) and SIGKILL, also inside checkpoint and sample writes: every
checkpoint on disk loads, SIGTERM / SIGINT end with a checkpoint, exit status 3 and one line,
and the resumed run ends bit-identical to an uninterrupted one. Eval and sample runs continue
from their last finished batch."""
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from run.checkpoint import load_checkpoint
from run.preemption import EXIT_PREEMPTED, StopRequest

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ["--config=configs/toy_gmm.py", "--config.training.n_iters=1000",
         "--config.training.snapshot_freq=500", "--config.training.snapshot_freq_for_preemption=10",
         "--config.training.snapshot_sampling=False", "--config.training.log_freq=50",
         "--config.training.eval_freq=100000", "--config.training.batch_size=64",
         "--config.model.width=32", "--config.model.dropout=0.1"]  # dropout: global RNG too
EVAL = ["--config.eval.bpd_num_examples=64", "--config.eval.batch_size=4",
        "--config.eval.rtol=1e-2", "--config.eval.atol=1e-2", "--config.eval.num_samples=48",
        "--config.sampling.num_steps=30"]

# main.py with every atomic write announced by a marker file (present while a file is being
# written) and slowed down, so that a test can signal or kill the process inside a write.
DRIVER = """
import sys, time, pathlib
import run.files as files
real = files._atomic_write
marker = pathlib.Path(sys.argv[1])
def slow_write(path, write):
    def slowly(f):
        marker.touch()
        write(f)
        time.sleep(0.02)
    try:
        return real(path, slowly)
    finally:
        marker.unlink(missing_ok=True)
files._atomic_write = slow_write
import main
sys.exit(main.run(["main.py"] + sys.argv[2:]))
"""


def start(workdir, marker, *flags):
    return subprocess.Popen([sys.executable, "-c", DRIVER, str(marker), *TRAIN, *EVAL, *flags,
                             f"--workdir={workdir}"], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))


def wait_for(condition, proc, timeout=120):
    deadline = time.time() + timeout
    while not condition() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)


def error_lines(stderr: str):
    return [line for line in stderr.splitlines() if line.startswith(("error", "stopped"))]


def all_checkpoints_load(workdir):
    for path in workdir.rglob("*.pth"):
        assert isinstance(load_checkpoint(path), dict), path


def final_state(workdir):
    state = load_checkpoint(workdir / "checkpoints-meta" / "checkpoint.pth")
    assert state["step"] == 1000
    return state


def stop_once(workdir, marker, sig, in_write, rng, outcomes):
    """Start training on `workdir`, wait until it has saved a checkpoint of its own, then send
    `sig` (inside a checkpoint write, or at a random moment); returns the process."""
    meta = workdir / "checkpoints-meta" / "checkpoint.pth"
    step_before = load_checkpoint(meta)["step"] if meta.exists() else 0
    proc = start(workdir, marker)
    wait_for(lambda: meta.exists() and load_checkpoint(meta)["step"] > step_before, proc)
    if in_write:
        wait_for(marker.exists, proc)
        outcomes["in_write"] += marker.exists()
    else:
        time.sleep(rng.uniform(0.0, 0.3))
    if proc.poll() is None:
        proc.send_signal(sig)
        outcomes[sig.name] += 1
    return proc


def check_stopped(proc, sig, workdir):
    """SIGTERM / SIGINT: exit 3, one line naming the step, saved at that step."""
    status = proc.wait(timeout=120)
    stderr = proc.stderr.read()
    if sig != signal.SIGKILL and status != 0:
        lines = error_lines(stderr)
        assert status == EXIT_PREEMPTED and len(lines) == 1, stderr[-2000:]
        assert lines[0].startswith(f"stopped: {sig.name} at step "), lines
        step = int(lines[0].split(" at step ")[1].split(";")[0])
        assert load_checkpoint(workdir / "checkpoints-meta" / "checkpoint.pth")["step"] == step
    all_checkpoints_load(workdir)


@pytest.mark.slow
def test_twelve_signals_and_kills_then_resume_matches_an_uninterrupted_run(tmp_path):
    """Two workdirs stopped six times each (two processes at a time on the CI's two cores),
    cycling SIGKILL, SIGTERM and SIGINT, some inside checkpoint writes."""
    reference = start(tmp_path / "reference", tmp_path / "ref_marker")
    workdirs = [tmp_path / "stopped_a", tmp_path / "stopped_b"]
    markers = [tmp_path / "marker_a", tmp_path / "marker_b"]
    rng = random.Random(0)
    outcomes = {"SIGKILL": 0, "SIGTERM": 0, "SIGINT": 0, "in_write": 0}
    signals = (signal.SIGKILL, signal.SIGTERM, signal.SIGINT)
    for trial in range(0, 12, 2):
        procs = [stop_once(workdirs[j], markers[j], signals[(trial + j) % 3],
                           (trial + j) % 4 == 0, rng, outcomes) for j in range(2)]
        for j, proc in enumerate(procs):
            check_stopped(proc, signals[(trial + j) % 3], workdirs[j])
            markers[j].unlink(missing_ok=True)
    assert min(outcomes[s] for s in ("SIGKILL", "SIGTERM", "SIGINT")) >= 4, outcomes
    assert outcomes["in_write"] >= 1, outcomes
    assert reference.wait(timeout=600) == 0, reference.stderr.read()
    expected = final_state(tmp_path / "reference")
    finals = [start(w, m) for w, m in zip(workdirs, markers)]
    for workdir, final in zip(workdirs, finals):
        assert final.wait(timeout=600) == 0, final.stderr.read()
        all_checkpoints_load(workdir)
        state = final_state(workdir)
        for name, value in expected["model"].items():
            assert torch.equal(state["model"][name], value), name
        for got, want in zip(state["ema"]["shadow_params"], expected["ema"]["shadow_params"]):
            assert torch.equal(got, want)
        assert torch.equal(state["rng"], expected["rng"])


@pytest.mark.slow
@pytest.mark.parametrize("mode, sig", [("eval", signal.SIGTERM), ("sample", signal.SIGKILL)])
def test_eval_and_sample_continue_after_a_stop(tmp_path, mode, sig):
    workdir, marker = tmp_path / "work", tmp_path / "marker"
    short = ["--config.training.n_iters=20", "--config.training.snapshot_freq=20"]
    assert start(workdir, marker, *short).wait(timeout=600) == 0
    reference = tmp_path / "reference"
    subprocess.run(["cp", "-r", str(workdir), str(reference)], check=True)
    assert start(reference, marker, *short, f"--mode={mode}").wait(timeout=600) == 0

    proc = start(workdir, marker, *short, f"--mode={mode}")
    progress = (lambda: list(workdir.glob("eval/bpd_progress_*"))) if mode == "eval" else (
        lambda: list(workdir.glob("samples/*/progress_*")))
    wait_for(lambda: bool(progress()), proc)
    if sig == signal.SIGKILL:
        wait_for(marker.exists, proc)          # inside a progress or sample write
    proc.send_signal(sig)
    status = proc.wait(timeout=120)
    if sig != signal.SIGKILL:
        lines = error_lines(proc.stderr.read())
        assert status == EXIT_PREEMPTED and len(lines) == 1 and "rerun" in lines[0], lines
    assert progress(), "the finished batches are kept"
    assert start(workdir, marker, *short, f"--mode={mode}").wait(timeout=600) == 0
    assert not progress(), "finished: the progress is removed"
    if mode == "eval":
        got = json.loads((workdir / "eval" / "metrics.json").read_text())
        want = json.loads((reference / "eval" / "metrics.json").read_text())
        assert got == want
    else:
        got, = workdir.glob("samples/step_20_*/samples.npz")
        want, = reference.glob("samples/step_20_*/samples.npz")
        with np.load(got) as a, np.load(want) as b:
            assert np.array_equal(a["samples"], b["samples"])


def test_a_second_interrupt_aborts_at_once():
    with pytest.raises(KeyboardInterrupt):
        with StopRequest() as stop:
            os.kill(os.getpid(), signal.SIGINT)
            assert stop.requested == "SIGINT" and stop.should_stop()
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler   # restored


def test_signals_set_a_flag_and_handlers_are_restored():
    before = signal.getsignal(signal.SIGTERM)
    with StopRequest() as stop:
        assert not stop.should_stop()
        os.kill(os.getpid(), signal.SIGUSR1)
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested == "SIGUSR1" and stop.should_stop()
    assert signal.getsignal(signal.SIGTERM) == before


def test_a_stop_is_honoured_at_the_next_score_evaluation():
    """However many corrector steps a sampler step makes, the score is checked at every call:
    the run stops at the first evaluation after the signal."""
    import samplers
    import sde_lib
    from models.analytic import GaussianMixture
    from run.preemption import Preempted, StopChecked, stop_checked

    sde = sde_lib.VPSDE(N=50)
    exact = GaussianMixture([1.0], [[0.0, 0.0]], [1.0]).score_fn(sde)
    calls = []

    def score_fn(x, t):
        calls.append(1)
        if len(calls) == 7:
            os.kill(os.getpid(), signal.SIGTERM)
        return exact(x, t)
    with StopRequest() as stop:
        with pytest.raises(Preempted, match="SIGTERM during a sampler step"):
            samplers.sample(stop_checked(score_fn, stop), sde, (4, 2), "pc",
                            corrector="langevin", n_steps=1000, num_steps=50)
    assert len(calls) == 7

    class Capable:
        learn_variance = True

        def __call__(self, x, t):
            return x

        def forward_with_variance(self, x, t):
            return x, x

        def select_rows(self, index):
            return Capable()
    stop = StopRequest()
    checked = stop_checked(Capable(), stop)
    assert checked.learn_variance and isinstance(checked.select_rows([0]), StopChecked)
    stop.requested = "SIGINT"
    for call in (lambda: checked(1, 0), lambda: checked.forward_with_variance(1, 0),
                 lambda: checked.select_rows([0])(1, 0)):
        with pytest.raises(Preempted, match="SIGINT"):
            call()


@pytest.mark.slow
def test_sigterm_inside_a_long_corrector_loop_stops_within_a_step(tmp_path):
    """A sample whose single batch takes minutes (100 000 Langevin steps per step) ends with
    exit 3 and one line within seconds of SIGTERM, writing no samples."""
    workdir, marker = tmp_path / "work", tmp_path / "marker"
    short = ["--config.training.n_iters=10", "--config.training.snapshot_freq=10"]
    assert start(workdir, marker, *short).wait(timeout=600) == 0
    proc = start(workdir, marker, *short, "--mode=sample", "--config.sampling.corrector=langevin",
                 "--config.sampling.n_steps_each=100000", "--config.eval.num_samples=4",
                 "--config.eval.batch_size=4")
    wait_for(lambda: '"mode": "sample"' in (workdir / ".lock").read_text(), proc)
    time.sleep(3)                         # into the sampler's loops
    sent = time.time()
    proc.send_signal(signal.SIGTERM)
    status = proc.wait(timeout=60)
    lines = error_lines(proc.stderr.read())
    assert status == EXIT_PREEMPTED and time.time() - sent < 10, lines
    assert len(lines) == 1 and "SIGTERM during a sampler step" in lines[0], lines
    assert not list(workdir.glob("samples/step_*/samples.npz"))


@pytest.mark.slow
def test_sigterm_inside_snapshot_sampling_stops_within_a_step(tmp_path):
    """Training's snapshot samples (one process) stop within a sampler step too, after the
    step's checkpoint is saved; the resumed run draws them again."""
    workdir, marker = tmp_path / "work", tmp_path / "marker"
    proc = start(workdir, marker, "--config.training.n_iters=20",
                 "--config.training.snapshot_freq=10", "--config.training.snapshot_sampling=True",
                 "--config.training.snapshot_sampler=sampling",     # config.sampling's PC
                 "--config.sampling.corrector=langevin", "--config.sampling.n_steps_each=100000")
    wait_for(lambda: (workdir / "checkpoints" / "checkpoint_10.pth").exists(), proc)
    time.sleep(2)                         # into the snapshot's sampler loops
    sent = time.time()
    proc.send_signal(signal.SIGTERM)
    status = proc.wait(timeout=60)
    lines = error_lines(proc.stderr.read())
    assert status == EXIT_PREEMPTED and time.time() - sent < 10, lines
    assert len(lines) == 1 and "SIGTERM during a sampler step" in lines[0], lines
    assert load_checkpoint(workdir / "checkpoints-meta" / "checkpoint.pth")["step"] == 10
    assert not (workdir / "samples" / "iter_10" / "samples.npz").exists()
