"""The hostile suite's inputs, end to end through `main.run` (beside `tests/test_hostile.py`):
a stored config of the wrong JSON type or field types, unreadable checkpoints, config files that
fail, and FID / IS settings that cannot give a number. Each ends with one line and its exit
status before any work, the workdir unchanged."""

import pytest
import torch

import main
from run.checkpoint import load_checkpoint
from test_hostile import refused, run, trained, tree  # noqa: F401 — `trained` is a fixture


@pytest.mark.parametrize("text, match", [
    ("null", "must hold a JSON object of config sections, not null"),
    ("[1, 2]", "not a list"),
    ('{"model": 3}', "section 'model' must be a JSON object of fields, not a number"),
    ('{"sde": {"name": 3}}', "sde.name=3 has the wrong type"),
    ("{not json", "is not readable JSON")])
def test_a_stored_config_of_the_wrong_type_is_one_line(trained, capsys, text, match):
    (trained / "config.json").write_text(text)
    before = tree(trained)
    capsys.readouterr()
    assert main.run(["main.py", f"--workdir={trained}", "--mode=eval"]) == 2   # without --config
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "config.json" in lines[0] and match in lines[0], lines
    if "wrong type" not in match:     # with --config the session reads it and says the same
        refused(capsys, trained, "eval", match=match)
    else:
        refused(capsys, trained, "eval", match="sde.name=3 (stored)")
    assert tree(trained) == before


def test_a_text_meta_checkpoint_falls_back_to_the_newest_snapshot(trained, capsys):
    meta = trained / "checkpoints-meta" / "checkpoint.pth"
    meta.write_text("hello\n")
    assert run(capsys, trained, "train", "--config.training.n_iters=12")[0] == 0
    assert load_checkpoint(meta)["step"] == 12   # resumed at 8 (the snapshot), not at 0
    steps = sorted(p.name for p in (trained / "checkpoints").iterdir())
    assert steps == ["checkpoint_12.pth", "checkpoint_4.pth", "checkpoint_8.pth"]


def test_no_readable_checkpoint_is_refused_never_trained_over(trained, capsys):
    paths = [trained / "checkpoints-meta" / "checkpoint.pth",
             *sorted((trained / "checkpoints").glob("*.pth"))]
    for i, path in enumerate(paths):
        path.write_bytes(path.read_bytes()[:200] if i else b"text, not a checkpoint")
    for mode in ("train", "eval", "sample"):
        line = refused(capsys, trained, mode, "--config.training.n_iters=12",
                       match="none of the 3 checkpoints")
        assert all(str(path) in line for path in paths), line


CONFIG_FILES = {"raises.py": ("raise RuntimeError('boom')\n", "RuntimeError: boom"),
                "imports.py": ("import no_such_module\n", "No module named 'no_such_module'"),
                "exits.py": ("import sys\nsys.exit(0)\n", "called sys.exit(0)"),
                "late.py": ("def get_config():\n    raise OSError('late')\n", "late")}


@pytest.mark.parametrize("name", sorted(CONFIG_FILES))
def test_a_config_file_that_fails_is_one_line(tmp_path, capsys, name):
    source, match = CONFIG_FILES[name]
    (tmp_path / name).write_text(source)
    argv = ["main.py", f"--config={tmp_path / name}", f"--workdir={tmp_path / 'w'}"]
    capsys.readouterr()
    assert main.run(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and match in lines[0], lines
    assert not (tmp_path / "w").exists()
    assert main.run([*argv, "--verbose"]) == 2
    assert "Traceback" in capsys.readouterr().err


class _NotInception(torch.nn.Module):
    """A TorchScript module with the Inception's signature but 3 features and 10 classes."""

    def __init__(self):
        super().__init__()
        self.head = torch.nn.Linear(3, 10)

    def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        pooled = x.float().mean(dim=(2, 3))
        return pooled if return_features else torch.softmax(self.head(pooled), dim=1)


def test_an_inception_path_of_another_network_is_refused(trained, capsys, tmp_path):
    wrong = tmp_path / "wrong.pt"
    torch.jit.script(_NotInception()).save(str(wrong))
    fid = ["--config.eval.enable_fid=True", "--config.eval.enable_sampling=True",
           f"--config.eval.inception_path={wrong}"]
    for mode in ("eval", "fid_stats"):
        refused(capsys, trained, mode, *fid, "--config.eval.num_samples=20",
                match="not the FID Inception (features (2, 3), outputs (2, 10)")


def test_too_few_samples_for_the_inception_score_are_refused(trained, capsys):
    refused(capsys, trained, "eval", "--config.eval.enable_fid=True",
            "--config.eval.enable_sampling=True", "--config.eval.num_samples=8",
            match="config.eval.num_samples must be at least 20")
