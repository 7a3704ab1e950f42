"""run.lock: one run per workdir; the holder is named; a dead holder's lock is taken over."""
import json
import os
import subprocess
import sys
import time

import pytest

from run.lock import WorkdirLock, WorkdirLocked


def test_a_second_holder_is_refused_naming_the_first(tmp_path):
    with WorkdirLock(tmp_path, "train"):
        with pytest.raises(WorkdirLocked, match=rf"a train run \(host .*, PID {os.getpid()}, "
                                                r"started .*\)"):
            WorkdirLock(tmp_path, "eval").acquire()
    with WorkdirLock(tmp_path, "eval") as lock:   # released: free again, nothing taken over
        assert lock.taken_over is None


def test_the_lock_of_a_killed_process_is_taken_over(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; sys.path.insert(0, sys.argv[2]); from run.lock import WorkdirLock; "
        "WorkdirLock(sys.argv[1], 'train').acquire(); print('held', flush=True); "
        "time.sleep(60)"), str(tmp_path), os.getcwd()], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(WorkdirLocked, match=f"PID {holder.pid}"):
        WorkdirLock(tmp_path, "train").acquire()
    holder.kill()
    holder.wait()
    with WorkdirLock(tmp_path, "train") as lock:   # the kernel released the dead holder's lock
        assert f"PID {holder.pid}" in lock.taken_over
        assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()
    assert (tmp_path / ".lock").read_text() == ""   # a clean release leaves no holder


def test_a_garbled_lock_file_without_a_holder_is_taken_over(tmp_path):
    (tmp_path / ".lock").write_text("{not json")
    with WorkdirLock(tmp_path, "sample") as lock:
        assert lock.taken_over is not None
