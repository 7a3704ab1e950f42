"""run.files: atomic writes that keep the old file on any failure, and never leave the workdir."""
import errno
import json
import os

import numpy as np
import pytest

from run.files import (OutsideWorkdirError, atomic_write, check_inside, readable_npz, save_npz,
                       write_json)


def test_a_failing_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "metrics.json"
    write_json(path, {"bpd": 3.0})

    def full_disk(f):
        f.write(b'{"bpd": ')
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        atomic_write(path, full_disk)
    assert json.loads(path.read_text()) == {"bpd": 3.0}
    assert os.listdir(tmp_path) == ["metrics.json"]


def test_a_link_at_the_file_name_is_replaced_not_followed(tmp_path):
    outside, work = tmp_path / "outside.npz", tmp_path / "work"
    outside.write_bytes(b"precious")
    (work / "samples").mkdir(parents=True)
    (work / "samples" / "samples.npz").symlink_to(outside)
    save_npz(work / "samples" / "samples.npz", {"x": np.arange(3)}, root=work)
    assert outside.read_bytes() == b"precious"
    assert not (work / "samples" / "samples.npz").is_symlink()
    assert readable_npz(work / "samples" / "samples.npz")


def test_a_folder_linking_out_of_the_workdir_is_refused_before_writing(tmp_path):
    outside, work = tmp_path / "elsewhere", tmp_path / "work"
    outside.mkdir()
    work.mkdir()
    (work / "eval").symlink_to(outside)
    with pytest.raises(OutsideWorkdirError, match="leads out of the workdir"):
        write_json(work / "eval" / "metrics.json", {}, root=work)
    with pytest.raises(OutsideWorkdirError):   # also for folders not made yet below the link
        write_json(work / "eval" / "new" / "metrics.json", {}, root=work)
    assert os.listdir(outside) == []
    inside = work / "real"
    inside.mkdir()
    (work / "alias").symlink_to(inside)         # a link that stays inside is fine
    check_inside(work / "alias", work)
    write_json(work / "alias" / "m.json", {"a": 1}, root=work)
    assert json.loads((inside / "m.json").read_text()) == {"a": 1}


def test_a_workdir_reached_through_a_link_is_fine(tmp_path):
    real = tmp_path / "scratch" / "run"
    real.mkdir(parents=True)
    (tmp_path / "run").symlink_to(real)
    write_json(tmp_path / "run" / "eval" / "metrics.json", {"ok": True}, root=tmp_path / "run")
    assert (real / "eval" / "metrics.json").exists()


def test_truncated_npz_is_not_readable(tmp_path):
    path = save_npz(tmp_path / "a.npz", {"x": np.random.default_rng(0).normal(size=1000)})
    assert readable_npz(path)
    path.write_bytes(path.read_bytes()[:300])
    assert not readable_npz(path) and not readable_npz(tmp_path / "missing.npz")
