"""`--config`: a mistyped path gets one line with the nearest config file's name."""
from pathlib import Path

import pytest

import main
from cli.config_source import check_config_path

ROOT = Path(__file__).resolve().parents[1]


def test_existing_paths_pass(monkeypatch):
    monkeypatch.chdir(ROOT)
    check_config_path("configs/vp_digits.py")
    check_config_path("configs/vp_digits.py:arg")   # config_flags' path:argument form
    check_config_path(None)


@pytest.mark.parametrize("value, hint", [
    ("configs/vp_digit.py", "did you mean configs/vp_digits.py?"),
    ("config/vp_digits.py", "did you mean configs/vp_digits.py?"),
    ("configs/zzz.py", "the config files in configs/ are"),
])
def test_mistyped_path(monkeypatch, capsys, tmp_path, value, hint):
    monkeypatch.chdir(ROOT)
    status = main.run(["main.py", "--config", value, "--workdir", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert status == 2 and err.splitlines() == [f"error: --config {value}: no such file; "
                                                f"{err.split('; ', 1)[1]}"], err
    assert hint in err and not (tmp_path / "run").exists()
