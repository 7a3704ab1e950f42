"""A hostile user against the run layer, end to end through `main.run` (toy configs, seconds each).

Every case asserts the exit status, a single line naming the problem (no traceback), the
workdir's earlier files unchanged where the run was refused, and nothing written outside the
workdir. Signals and kills are in `tests/test_preemption.py`.
"""
import errno
import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import main
from run.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
TOY = ["--config=configs/toy_gmm.py", "--config.model.width=16", "--config.model.nf=8",
       "--config.model.num_res_blocks=1", "--config.training.n_iters=8",
       "--config.training.snapshot_freq=4", "--config.training.snapshot_freq_for_preemption=2",
       "--config.training.log_freq=2", "--config.training.eval_freq=100",
       "--config.training.batch_size=32", "--config.training.num_snapshot_samples=8",
       "--config.data.num_train=256", "--config.data.num_test=64",
       "--config.sampling.num_steps=4", "--config.eval.batch_size=8",
       "--config.eval.bpd_num_examples=16", "--config.eval.num_samples=8",
       "--config.eval.rtol=1e-2", "--config.eval.atol=1e-2",
       "--config.classifier.n_iters=2", "--config.classifier.width=8",
       "--config.classifier.nf=8", "--config.classifier.eval_num_examples=16"]


PROGRESS_BAR = re.compile(r"^\w+:\s+\d+%\|")   # tqdm's lines


def run(capsys, workdir, mode, *extra):
    """main.run in this process: (exit status, stderr lines other than progress bars)."""
    capsys.readouterr()
    status = main.run(["main.py", *TOY, f"--workdir={workdir}", f"--mode={mode}", *extra])
    return status, [line for line in capsys.readouterr().err.splitlines()
                    if line.strip() and not PROGRESS_BAR.match(line)]


def refused(capsys, workdir, mode, *extra, status=2, match=""):
    """Run expecting failure: one line, no traceback, nothing changed in the workdir."""
    before = tree(workdir)
    code, lines = run(capsys, workdir, mode, *extra)
    assert code == status, lines
    assert len(lines) == 1 and lines[0].startswith("error: ") and match in lines[0], lines
    assert tree(workdir) == before
    return lines[0]


def tree(folder: Path) -> dict:
    """Every file below `folder` (relative path → digest), but the lock file's holder and the
    TensorBoard event files (a new one per run, written before a run's own failure)."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".lock" and "tensorboard" not in p.parts}


@pytest.fixture
def trained(tmp_path_factory, capsys):
    """A workdir trained for 8 steps (snapshots at 4 and 8), beside an `outside` sentinel."""
    base = tmp_path_factory.mktemp("hostile")
    workdir, outside = base / "work", base / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("precious")
    assert run(capsys, workdir, "train")[0] == 0
    yield workdir
    assert tree(outside) == {"keep.txt": hashlib.sha256(b"precious").hexdigest()}
    assert sorted(p.name for p in base.iterdir()) == ["outside", "work"]


def test_a_second_run_on_a_held_workdir_is_refused_naming_the_holder(trained, capsys):
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; sys.path.insert(0, sys.argv[2]); from run.lock import WorkdirLock; "
        "WorkdirLock(sys.argv[1], 'train').acquire(); print('held', flush=True); "
        "time.sleep(60)"), str(trained), str(ROOT)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        for mode in ("train", "eval", "sample", "train_classifier"):
            refused(capsys, trained, mode, match=f"in use by a train run (host")
    finally:
        holder.kill()
        holder.wait()
    assert run(capsys, trained, "sample")[0] == 0     # the dead holder's lock is taken over


@pytest.mark.parametrize("field", ["--config.sde.beta_max=5.0", "--config.sde.name=vesde",
                                   "--config.model.width=32",
                                   "--config.training.continuous=False"])
def test_a_changed_model_defining_field_is_refused_by_every_mode(trained, capsys, field):
    name = field[len("--config."):].split("=")[0]
    for mode in ("train", "eval", "sample"):
        line = refused(capsys, trained, mode, field, "--config.training.n_iters=12",
                       match=name)
        assert "(stored) vs" in line
    (trained / "config.json").unlink()   # the checkpoint remembers it too (older workdirs)
    refused(capsys, trained, "eval", field, match=f"checkpoint {trained}")


def test_fields_that_may_change_are_accepted(trained, capsys):
    assert run(capsys, trained, "train", "--config.training.n_iters=10",
               "--config.training.batch_size=16", "--config.optim.lr=1e-3",
               "--config.model.dropout=0.1")[0] == 0
    assert load_checkpoint(trained / "checkpoints-meta" / "checkpoint.pth")["step"] == 10
    stored = json.loads((trained / "config.json").read_text())
    assert stored["training"]["batch_size"] == 32   # the first run's config, kept as it was


EVAL_CHANGES = [("--config.eval.divergence=rademacher", "divergence", "rademacher"),
                ("--config.eval.bpd_dataset=train", "split", "train"),
                ("--config.eval.bpd_num_examples=8", "num_examples", 8),
                ("--config.eval.batch_size=4", "batch_size", 4),
                ("--config.eval.rtol=1e-3", "rtol", 1e-3),
                ("--config.eval.likelihood_eps=1e-3", "eps", 1e-3),
                ("--config.eval.bpd_repeats=2", "repeats", 2)]


@pytest.mark.slow
def test_eval_results_belong_to_their_settings(trained, capsys, monkeypatch):
    """A rerun with any changed setting never reuses progress of other settings: with the
    progress of a run left behind, each changed setting gives what a fresh workdir gives."""
    from run.progress import Progress
    assert run(capsys, trained, "eval")[0] == 0
    baseline = json.loads((trained / "eval" / "metrics.json").read_text())
    assert baseline["settings"]["bpd"]["divergence"] == "exact"
    assert not list((trained / "eval").glob("*progress*"))
    monkeypatch.setattr(Progress, "finish", lambda self: None)    # leave progress behind
    assert run(capsys, trained, "eval")[0] == 0
    assert list((trained / "eval").glob("bpd_progress_*"))
    for flag, field, value in EVAL_CHANGES:
        assert run(capsys, trained, "eval", flag)[0] == 0, flag
        metrics = json.loads((trained / "eval" / "metrics.json").read_text())
        assert metrics["settings"]["bpd"][field] == value, flag
        count = metrics["settings"]["bpd"]["num_examples"]
        assert metrics["num_examples"] == count
        assert metrics["num_evaluations"] == count * metrics["settings"]["bpd"]["repeats"]
        if field in ("divergence", "split", "num_examples", "eps"):
            assert metrics["bpd"] != baseline["bpd"], flag
        assert run(capsys, trained, "eval")[0] == 0   # back: the baseline, not a mixture
        again = json.loads((trained / "eval" / "metrics.json").read_text())
        assert again["bpd"] == baseline["bpd"] and again["settings"] == baseline["settings"]


@pytest.mark.parametrize("folder, mode", [("checkpoints", "train"), ("checkpoints-meta", "train"),
                                          ("tensorboard", "train"), ("samples", "sample"),
                                          ("eval", "eval"), ("classifier", "train_classifier")])
def test_an_output_folder_linking_out_of_the_workdir_is_refused(trained, capsys, folder, mode):
    outside = trained.parent / "outside"
    target = trained / folder
    if target.exists():
        os.replace(target, trained.parent / f"{folder}.moved")
    target.symlink_to(outside)
    refused(capsys, trained, mode, "--config.training.n_iters=12", match="leads out of the workdir")
    target.unlink()
    moved = trained.parent / f"{folder}.moved"
    if moved.exists():
        os.replace(moved, target)


def test_links_at_output_files_are_replaced_never_followed(trained, capsys):
    outside = trained.parent / "outside" / "keep.txt"
    assert run(capsys, trained, "sample")[0] == 0
    run_folder = next((trained / "samples").glob("step_8_pc_*"))
    for name in ("samples.npz", "samples.png", "settings.json"):
        (run_folder / name).unlink()
        (run_folder / name).symlink_to(outside)
    assert run(capsys, trained, "eval")[0] == 0
    (trained / "eval" / "metrics.json").unlink()
    (trained / "eval" / "metrics.json").symlink_to(outside)
    assert run(capsys, trained, "sample")[0] == 0
    assert run(capsys, trained, "eval")[0] == 0
    for path in [*(run_folder / n for n in ("samples.npz", "samples.png", "settings.json")),
                 trained / "eval" / "metrics.json"]:
        assert path.is_file() and not path.is_symlink(), path
    # The fixture checks that keep.txt still says "precious".


def _weights(workdir, scale=None, value=None):
    """Rewrite the checkpoint's model and EMA weights (×scale, or = value)."""
    path = workdir / "checkpoints-meta" / "checkpoint.pth"
    state = load_checkpoint(path)
    change = (lambda p: p * scale) if scale is not None else (lambda p: torch.full_like(p, value))
    state["model"] = {k: change(v) if v.is_floating_point() else v
                      for k, v in state["model"].items()}
    state["ema"]["shadow_params"] = [change(p) for p in state["ema"]["shadow_params"]]
    torch.save(state, path)


def test_nan_weights_are_refused_by_eval_and_sample(trained, capsys):
    _weights(trained, value=float("nan"))
    for mode in ("eval", "sample"):
        line = refused(capsys, trained, mode, status=1, match="non-finite weights")
        assert "cannot be evaluated or sampled" in line


def test_huge_weights_give_an_error_not_a_number(trained, capsys):
    _weights(trained, scale=1e10)
    line = refused(capsys, trained, "sample", status=1, match="samples are not finite")
    assert "nothing was written" in line
    refused(capsys, trained, "eval", status=1, match="evaluations")


def test_non_finite_numbers_are_refused_before_any_work(tmp_path, capsys):
    for flag in ("--config.optim.lr=inf", "--config.sde.beta_max=nan",
                 "--config.eval.rtol=-inf"):
        refused(capsys, tmp_path / "w", "train", flag, match="must be a finite number")
    assert not (tmp_path / "w").exists()


def test_weights_that_overflow_are_never_checkpointed(tmp_path, capsys, monkeypatch):
    """An optimizer step whose result overflows (finite loss and gradient, inf weights) stops
    the run before the EMA or any checkpoint sees the weights, whatever the nan_policy."""
    real_step, calls = torch.optim.Adam.step, []

    def overflowing_step(self, *args, **kwargs):
        out = real_step(self, *args, **kwargs)
        calls.append(1)
        if len(calls) == 3:                         # the third step overflows one weight
            with torch.no_grad():
                self.param_groups[0]["params"][0].view(-1)[0] = float("inf")
        return out
    monkeypatch.setattr(torch.optim.Adam, "step", overflowing_step)
    workdir = tmp_path / "w"
    code, lines = run(capsys, workdir, "train", "--config.training.nan_policy=skip",
                      "--config.training.snapshot_freq_for_preemption=1")
    assert code == 1 and len(lines) == 1 and "parameters became non-finite" in lines[0], lines
    assert load_checkpoint(workdir / "checkpoints-meta" / "checkpoint.pth")["step"] == 2
    for path in workdir.rglob("*.pth"):
        state = load_checkpoint(path)
        assert all(torch.isfinite(v).all() for v in state["model"].values()), path
        assert all(torch.isfinite(v).all() for v in state["ema"]["shadow_params"]), path


def test_consecutive_skips_are_bounded_and_counted():
    from training.monitor import NonFiniteLossError, StepMonitor
    from training.step import StepResult

    def result(loss, grad=1.0):
        loss, grad = torch.tensor(loss), torch.tensor(grad)
        finite = torch.isfinite(loss) & torch.isfinite(grad)
        return StepResult(loss, grad, finite, torch.tensor(True), ~finite)

    monitor = StepMonitor("cpu", nan_policy="skip", nan_skip_limit=3)
    for step, loss in enumerate([1.0, float("nan"), 3.0, float("inf"), float("nan")]):
        monitor.observe(result(loss), step)
    means = monitor.read()                      # a finite batch reset the run of skips
    assert means["skipped_non_finite"] == 3 and means["loss"] == 2.0
    monitor.observe(result(float("nan")), 5)    # the third in a row
    with pytest.raises(NonFiniteLossError, match="3 non-finite batches in a row .4 skipped"):
        monitor.read()
    stop = StepMonitor("cpu", nan_policy="stop")
    stop.observe(result(1.0, float("inf")), 7)
    with pytest.raises(NonFiniteLossError, match="at step 7"):
        stop.read()


def test_resume_without_checkpoints_meta_keeps_history(trained, capsys, tmp_path):
    snapshots = tree(trained / "checkpoints")
    assert sorted(snapshots) == ["checkpoint_4.pth", "checkpoint_8.pth"]
    reference = tmp_path / "straight"
    assert run(capsys, reference, "train", "--config.training.n_iters=12")[0] == 0
    for path in (trained / "checkpoints-meta").iterdir():
        path.unlink()
    assert run(capsys, trained, "train", "--config.training.n_iters=12")[0] == 0
    after = tree(trained / "checkpoints")
    assert {k: after[k] for k in snapshots} == snapshots      # history untouched
    mine = load_checkpoint(trained / "checkpoints" / "checkpoint_12.pth")
    straight = load_checkpoint(reference / "checkpoints" / "checkpoint_12.pth")
    assert mine["step"] == 12
    for name, value in straight["model"].items():
        assert torch.equal(mine["model"][name], value), name


def test_an_unreadable_newest_checkpoint_is_skipped_and_kept(trained, capsys):
    meta = trained / "checkpoints-meta" / "checkpoint.pth"
    meta.write_bytes(meta.read_bytes()[:100])
    corrupt = meta.read_bytes()
    assert run(capsys, trained, "eval")[0] == 0
    assert json.loads((trained / "eval" / "metrics.json").read_text())["step"] == 8
    assert meta.read_bytes() == corrupt


def test_snapshot_samples_lost_in_a_kill_are_written_on_resume(trained, capsys):
    folder = trained / "samples" / "iter_8"
    (folder / "samples.npz").unlink()
    assert run(capsys, trained, "train")[0] == 0
    with np.load(folder / "samples.npz") as archive:
        assert archive["samples"].shape == (8, 2)


def test_converted_and_newer_format_checkpoints(trained, capsys, tmp_path):
    state = load_checkpoint(trained / "checkpoints-meta" / "checkpoint.pth")
    converted = tmp_path / "converted" / "checkpoints-meta" / "checkpoint.pth"
    converted.parent.mkdir(parents=True)
    # What models.convert writes: weights, EMA, step, config; no optimizer, no generators.
    torch.save({key: state[key] for key in ("format", "model", "ema", "step", "config")},
               converted)
    code, lines = run(capsys, converted.parents[1], "train", "--config.training.n_iters=10")
    assert code == 0 and lines == [], lines     # the fresh optimizer is said in the log
    assert load_checkpoint(converted)["step"] == 10
    newer = load_checkpoint(trained / "checkpoints-meta" / "checkpoint.pth")
    newer["format"] = "score-sde/score-model/v9"
    torch.save(newer, trained / "checkpoints-meta" / "checkpoint.pth")
    for mode in ("train", "eval"):
        refused(capsys, trained, mode, "--config.training.n_iters=12", match="has format")


def test_full_disk_keeps_the_previous_checkpoint(trained, capsys, tmp_path, monkeypatch):
    """A real small filesystem where the machine allows mounting one, else ENOSPC simulated in
    the writer; either way the run ends with one line and the previous files stay readable."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)],
                             capture_output=True).returncode == 0
    try:
        workdir = disk / "work"
        subprocess.run(["cp", "-r", str(trained), str(workdir)], check=True)
        if mounted:
            free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
            (disk / "filler").write_bytes(b"\0" * max(free - 8192, 0))
        else:
            import run.files as files
            real = files._atomic_write

            def full(path, write):
                def partial(f):
                    f.write(b"\0" * 10)
                    raise OSError(errno.ENOSPC, "No space left on device")
                return real(path, partial)
            monkeypatch.setattr(files, "_atomic_write", full)
        before = tree(workdir / "checkpoints-meta")
        code, lines = run(capsys, workdir, "train", "--config.training.n_iters=12")
        errors = [line for line in lines if line.startswith("error")]
        assert code == 1 and len(errors) == 1 and "no space left" in errors[0], lines
        assert tree(workdir / "checkpoints-meta") == before
        assert load_checkpoint(workdir / "checkpoints-meta" / "checkpoint.pth")["step"] == 8
        assert not list(workdir.rglob("*.tmp"))
    finally:
        if mounted:
            subprocess.run(["umount", str(disk)], check=False)


def test_verbose_adds_the_traceback(tmp_path, capsys):
    assert run(capsys, tmp_path / "none", "eval")[0] == 1
    code, lines = run(capsys, tmp_path / "none", "eval", "--verbose")
    assert code == 1 and lines[0].startswith("error: no checkpoint") and "Traceback" in lines[1]


def test_out_of_memory_names_the_field_to_lower(trained, capsys, monkeypatch):
    from training.step import TrainStep

    def no_memory(*args, **kwargs):
        raise MemoryError("cannot allocate 80 GiB")
    monkeypatch.setattr(TrainStep, "step", no_memory)
    refused(capsys, trained, "train", "--config.training.n_iters=12", status=1,
            match="lower config.training.batch_size")


@pytest.mark.slow
def test_converter_errors_are_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "models.convert", str(tmp_path / "missing.pth"),
                             str(tmp_path / "out.pth"), "--reference-config",
                             str(tmp_path / "missing.json")], cwd=ROOT, capture_output=True,
                            text=True)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), lines
    assert not (tmp_path / "out.pth").exists()
