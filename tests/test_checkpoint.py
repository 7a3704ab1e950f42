"""run.checkpoint: atomic writes and safe, named-file loading errors."""
import os
import pickle

import pytest
import torch

from run.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


def test_roundtrip_and_no_temporary_files(tmp_path):
    path = tmp_path / "ckpt" / "checkpoint.pth"
    state = {"model": {"w": torch.arange(3.0)}, "step": 7, "rng": torch.ByteTensor([1, 2])}
    save_checkpoint(path, state)
    save_checkpoint(path, dict(state, step=8))
    loaded = load_checkpoint(path)
    assert loaded["step"] == 8 and torch.equal(loaded["model"]["w"], torch.arange(3.0))
    assert os.listdir(path.parent) == ["checkpoint.pth"]


def test_truncated_file_names_the_file(tmp_path):
    path = tmp_path / "checkpoint.pth"
    save_checkpoint(path, {"w": torch.randn(1000)})
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(CheckpointError, match="checkpoint.pth"):
        load_checkpoint(path)


def test_malicious_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / "executed"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))
    path = tmp_path / "evil.pth"
    torch.save({"model": Payload()}, path, pickle_module=pickle)
    with pytest.raises(CheckpointError, match="evil.pth"):
        load_checkpoint(path)
    assert not marker.exists()


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pth")
