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


def _run(workdir, mode, nproc, *extra):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    prefix = [sys.executable, "main.py"] if nproc == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
        "main.py"]
    result = subprocess.run([*prefix, *COMMON, f"--workdir={workdir}", f"--mode={mode}", *extra], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]


def _files(workdir):
    return sorted(str(p.relative_to(workdir)) for p in workdir.rglob("*")
                  if p.is_file() and "tfevents" not in p.name)


@pytest.mark.slow
def test_two_processes_match_one(tmp_path):
    single, double = tmp_path / "one", tmp_path / "two"
    _run(single, "train", 1)
    _run(double, "train", 2)
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
    assert _files(double) == _files(single)
    # Sharded eval of the same checkpoint: same bits/dim on the same examples, same samples.
    _run(single, "eval", 1, "--eval_folder=eval1")
    _run(single, "eval", 2, "--eval_folder=eval2")
    m1 = json.loads((single / "eval1" / "metrics.json").read_text())
    m2 = json.loads((single / "eval2" / "metrics.json").read_text())
    assert m1["num_examples"] == m2["num_examples"] == 10
    assert m2["bpd"] == pytest.approx(m1["bpd"], rel=1e-9)
    assert m2["nfe_mean"] == m1["nfe_mean"]
    s1 = np.load(single / "eval1" / "samples_6" / "samples.npz")["samples"]
    s2 = np.load(single / "eval2" / "samples_6" / "samples.npz")["samples"]
    assert s1.shape == (7, 2)
    # Same noise per sample; only float rounding of differently sized batches may differ.
    np.testing.assert_allclose(s2, s1, rtol=1e-5, atol=1e-6)
    # ... and they do not depend on the batch size either (per-sample seeds).
    _run(single, "eval", 1, "--eval_folder=eval3", "--config.eval.batch_size=2",
         "--config.eval.enable_bpd=False")
    s3 = np.load(single / "eval3" / "samples_6" / "samples.npz")["samples"]
    np.testing.assert_allclose(s3, s1, rtol=1e-5, atol=1e-6)


def _children(pid: int):
    """PIDs whose parent is `pid` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the process table from /proc")
def test_killing_the_launcher_ends_its_workers_and_frees_the_lock(tmp_path):
    import signal
    import time

    from run.lock import WorkdirLock
    workdir = tmp_path / "w"
    launcher = subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "main.py", *COMMON, "--config.training.n_iters=100000", f"--workdir={workdir}"],
        cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS="1"), stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    meta = workdir / "checkpoints-meta" / "checkpoint.pth"
    deadline = time.time() + 300
    while not meta.exists() and time.time() < deadline and launcher.poll() is None:
        time.sleep(0.2)
    workers = _children(launcher.pid)
    assert meta.exists() and len(workers) == 2, workers
    launcher.send_signal(signal.SIGKILL)
    launcher.wait()
    deadline = time.time() + 60
    while any(map(_alive, workers)) and time.time() < deadline:
        time.sleep(0.2)
    survivors = [pid for pid in workers if _alive(pid)]
    for pid in survivors:                            # never leave them training on
        os.kill(pid, signal.SIGKILL)
    assert not survivors, "workers outlived their launcher"
    with WorkdirLock(workdir, "train") as lock:      # free, and its holder ended
        assert lock.taken_over is None or "train run" in lock.taken_over
    state = torch.load(meta, weights_only=True)
    assert 0 < state["step"] < 100000                # stopped with a preemption checkpoint


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _two_nodes(workdir, mode, *extra):
    """Two launchers of one job on this host, as two machines would run it; their outputs."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2",
                "--nproc-per-node=1", "--rdzv-backend=c10d",
                f"--rdzv-endpoint=127.0.0.1:{_free_port()}", f"--rdzv-id={mode}", "main.py",
                *COMMON, f"--workdir={workdir}", f"--mode={mode}", *extra]
    nodes = [subprocess.Popen(launcher, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [node.communicate(timeout=600) for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], [err[-3000:] for _, err in outputs]
    return [out for out, _ in outputs]


@pytest.mark.slow
def test_two_nodes_with_a_c10d_rendezvous_match_one_launcher(tmp_path):
    """Two launchers of one job (`--nnodes=2 --nproc-per-node=1`, c10d on 127.0.0.1) train to
    the parameters of one launcher with two processes, write one set of files, and shard the
    evaluation as it does."""
    one, two = tmp_path / "one", tmp_path / "two"
    _run(one, "train", 2)
    outputs = _two_nodes(two, "train")
    a = torch.load(one / "checkpoints-meta" / "checkpoint.pth", weights_only=True)
    b = torch.load(two / "checkpoints-meta" / "checkpoint.pth", weights_only=True)
    assert a["step"] == b["step"] == 6
    for name, value in a["model"].items():
        torch.testing.assert_close(b["model"][name], value, rtol=1e-5, atol=1e-6)
    assert _files(two) == _files(one)
    assert sum("trained to step 6" in out for out in outputs) == 1     # rank 0 reports
    _run(one, "eval", 2, "--eval_folder=eval2")
    _two_nodes(one, "eval", "--eval_folder=nodes")
    m1 = json.loads((one / "eval2" / "metrics.json").read_text())
    m2 = json.loads((one / "nodes" / "metrics.json").read_text())
    assert m2["num_examples"] == m1["num_examples"] == 10
    assert m2["bpd"] == pytest.approx(m1["bpd"], rel=1e-9)
    s1 = np.load(one / "eval2" / "samples_6" / "samples.npz")["samples"]
    s2 = np.load(one / "nodes" / "samples_6" / "samples.npz")["samples"]
    np.testing.assert_allclose(s2, s1, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_streamed_images_on_two_processes_match_one(tmp_path):
    """Each rank reads (decodes) only its rows of every batch from a zip, augmented as those rows
    of the whole batch: the parameters match one process's."""
    import zipfile

    from tests.test_cli import TINY_IMAGES
    from tests.test_folder import write_pngs

    written = write_pngs(tmp_path / "pngs", per_class=12, size=(10, 9))
    with zipfile.ZipFile(tmp_path / "pngs.zip", "w") as archive:
        for path in written:
            archive.write(path, path.relative_to(tmp_path / "pngs").as_posix())
    env = dict(os.environ, OMP_NUM_THREADS="1")
    flags = [*TINY_IMAGES[1:], f"--config.data.path={tmp_path / 'pngs.zip'}",
             "--config.data.in_memory=False", "--config.data.num_workers=1",
             "--config.data.uniform_dequantization=True", "--config.model.dropout=0.0",
             "--config.training.snapshot_sampling=False", "--config.optim.warmup=0",
             "--config.optim.lr=1e-3", "--mode=train"]
    for nproc, workdir in ((1, tmp_path / "one"), (2, tmp_path / "two")):
        prefix = [sys.executable] if nproc == 1 else [
            sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
        result = subprocess.run([*prefix, "main.py", TINY_IMAGES[0], *flags,
                                 f"--workdir={workdir}"], cwd=ROOT, env=env,
                                capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
    a = torch.load(tmp_path / "one" / "checkpoints-meta" / "checkpoint.pth", weights_only=True)
    b = torch.load(tmp_path / "two" / "checkpoints-meta" / "checkpoint.pth", weights_only=True)
    assert a["step"] == b["step"] == 4
    for name, value in a["model"].items():
        torch.testing.assert_close(b["model"][name], value, rtol=1e-4, atol=1e-5)
