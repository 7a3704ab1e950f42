"""run.session and run.workdir end to end through `main.run`: the workdir and every output path
are resolved and refused before anything is created, the lock is never taken through a link,
stale temporaries are swept only after it and never through a link, and a link planted at any
name the project writes or sweeps leaves its target byte-identical."""
import hashlib
import os
from pathlib import Path

import pytest

from run.files import OutsideWorkdirError
from run.lock import WorkdirLock, WorkdirLocked
from run.workdir import resolve_workdir, sweep_temporaries
import main
from test_hostile import ROOT, TOY, refused, run, trained  # noqa: F401 — a fixture


def digests(folder: Path) -> dict:
    """Every file below `folder` (not following links) → its SHA-256."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink()}


@pytest.fixture
def outside(trained):
    """The sentinel folder beside the trained workdir, with a file named like a temporary."""
    folder = trained.parent / "outside"
    (folder / "draft.v1.tmp").write_text("a draft")
    yield folder
    (folder / "draft.v1.tmp").unlink()   # the `trained` fixture checks the rest is intact


def test_the_sweep_never_runs_through_a_refused_link(trained, outside, capsys):
    before = digests(outside)
    os.replace(trained / "samples", trained.parent / "samples.moved")
    (trained / "samples").symlink_to(outside)
    refused(capsys, trained, "sample", match="leads out of the workdir")
    assert digests(outside) == before
    (trained / "samples").unlink()
    os.replace(trained.parent / "samples.moved", trained / "samples")


def test_the_sweep_removes_real_temporaries_only(trained, outside, capsys):
    stale = trained / "samples" / "iter_8" / "samples.npz.k3j2.tmp"
    stale.write_bytes(b"partial")
    (trained / "samples" / "old").symlink_to(outside)           # a link inside, to a folder
    (trained / "samples" / "x.y.tmp").symlink_to(outside / "draft.v1.tmp")   # a link so named
    (trained / "config.json.zz.tmp").write_text("{")
    (trained / "notes.v2.tmp").write_text("the user's")         # the root's own files stay
    before = digests(outside)
    assert run(capsys, trained, "sample")[0] == 0
    assert not stale.exists() and not (trained / "config.json.zz.tmp").exists()
    assert (trained / "samples" / "x.y.tmp").is_symlink() and (trained / "notes.v2.tmp").exists()
    assert digests(outside) == before
    for name in ("old", "x.y.tmp", "notes.v2.tmp"):
        (trained / "samples" / name if name != "notes.v2.tmp" else trained / name).unlink()


@pytest.mark.parametrize("link", ["symbolic", "hard"])
def test_a_link_at_the_lock_is_refused_never_written_through(trained, outside, capsys, link):
    target = outside / "keep.txt"
    before = digests(outside)
    (trained / ".lock").unlink()
    if link == "symbolic":
        (trained / ".lock").symlink_to(target)
    else:
        os.link(target, trained / ".lock")
    for mode in ("train", "eval", "sample", "train_classifier", "fid_stats"):
        refused(capsys, trained, mode, "--config.training.n_iters=12", match=".lock is a")
    assert digests(outside) == before
    (trained / ".lock").unlink()


def test_a_link_at_every_file_name_leaves_its_target_intact(trained, outside, capsys):
    """Links at the files train, eval, sample and train_classifier write, read or sweep: each
    run succeeds (unreadable targets are skipped, links replaced, never followed)."""
    target = outside / "keep.txt"
    names = ["checkpoints-meta/checkpoint.pth", "checkpoints/checkpoint_12.pth",
             "checkpoints/checkpoint_4.pth.ab12.tmp", "samples/iter_12/samples.npz",
             "samples/iter_12/samples.png", "eval/metrics.json", "eval/bpd_progress_0of1.pth",
             "classifier/metrics.json", "config.json.ab12.tmp", "eval/samples_12/samples.npz",
             "eval/samples_12/settings.json"]
    for name in names:
        (trained / name).parent.mkdir(parents=True, exist_ok=True)
        (trained / name).unlink(missing_ok=True)
        (trained / name).symlink_to(target)
    (trained / "eval" / "linked").symlink_to(outside)
    before = digests(outside)
    for mode in ("train", "eval", "sample", "train_classifier"):
        status, lines = run(capsys, trained, mode, "--config.training.n_iters=12",
                            "--config.eval.enable_sampling=True")
        assert status == 0, (mode, lines)
    assert digests(outside) == before
    assert not (trained / "checkpoints-meta" / "checkpoint.pth").is_symlink()
    for name in names[3:6] + names[7:8] + names[9:]:     # written: the link replaced
        assert (trained / name).is_file() and not (trained / name).is_symlink(), name
    assert (trained / names[1]).is_symlink()    # a snapshot file that exists is kept as it is
    (trained / "eval" / "linked").unlink()
    (trained / "checkpoints" / "checkpoint_4.pth.ab12.tmp").unlink()
    (trained / "config.json.ab12.tmp").unlink()
    # The classifier's checkpoint, which train_classifier resumes from: unreadable, refused.
    (trained / "classifier" / "checkpoint.pth").unlink()
    (trained / "classifier" / "checkpoint.pth").symlink_to(target)
    refused(capsys, trained, "train_classifier", match="classifier/checkpoint.pth")
    assert digests(outside) == before


def test_a_stored_config_linking_out_is_read_never_written(trained, outside, capsys):
    before = digests(outside)
    (trained / "config.json").unlink()
    (trained / "config.json").symlink_to(outside / "keep.txt")
    for mode in ("train", "eval", "sample", "train_classifier"):
        refused(capsys, trained, mode, match="config.json is not readable JSON")
    assert digests(outside) == before


@pytest.mark.parametrize("folder", ["eval/../../x", "../x", "/tmp/score_sde_x", "", "."])
def test_an_eval_folder_out_of_the_workdir_is_refused_before_anything(tmp_path, capsys, folder):
    workdir = tmp_path / "fresh"
    for mode in ("eval", "fid_stats"):
        refused(capsys, workdir, mode, f"--eval_folder={folder}", match="--eval_folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == []     # nor the workdir, nor x
    assert not Path("/tmp/score_sde_x").exists()


def test_an_eval_folder_through_a_link_is_refused(trained, outside, capsys):
    (trained / "results").symlink_to(outside)
    refused(capsys, trained, "eval", "--eval_folder=results/ode", match="leads out of the workdir")
    assert not (outside / "ode").exists()
    (trained / "results").unlink()


def test_a_quoted_tilde_is_the_home_folder(tmp_path, capsys, monkeypatch):
    """`--workdir='~/w'` (the shell left the tilde alone) is the home folder's `w` for every
    step: the config.json lookup of a run without --config and the session alike."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    toy = [arg.replace("configs/", f"{ROOT}/configs/") for arg in TOY]
    argv = ["main.py", *toy, "--workdir=~/w", "--config.training.n_iters=2"]
    assert main.run([*argv, "--mode=train"]) == 0
    assert (tmp_path / "home" / "w" / "config.json").is_file()
    assert main.run(["main.py", "--workdir=~/w", "--mode=sample",
                     "--config.eval.num_samples=4", "--config.sampling.num_steps=2"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home"]   # no literal ./~


def test_resolution_touches_nothing(tmp_path):
    paths = resolve_workdir(tmp_path / "new" / "w", "eval_ode/run1")
    assert paths.eval == tmp_path / "new" / "w" / "eval_ode" / "run1"
    assert not (tmp_path / "new").exists()
    sweep_temporaries(paths)                            # nothing there: nothing to do
    with pytest.raises(OutsideWorkdirError, match="--eval_folder"):
        resolve_workdir(tmp_path, "a/../../b")


def test_a_fifo_at_the_lock_is_refused(tmp_path):
    os.mkfifo(tmp_path / ".lock")
    with pytest.raises(WorkdirLocked, match="not a file"):
        WorkdirLock(tmp_path, "train").acquire()
