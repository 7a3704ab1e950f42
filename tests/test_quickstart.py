"""The README's quick start is what `make demo`, `make test` and CI run, command for command."""
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def bash_blocks(text: str) -> list:
    """The commands of each ```bash block of `text` (comments and blank lines dropped)."""
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    return [[line.split("  #")[0].strip() for line in block.splitlines()
             if line.strip() and not line.lstrip().startswith("#")] for block in blocks]


def make_dry_run(target: str) -> list:
    """The commands `make -n target` prints in an active virtual environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
    env.update(VIRTUAL_ENV="/active/env", CONDA_PREFIX="")
    result = subprocess.run(["make", "-n", "--no-print-directory", target], cwd=ROOT, env=env,
                            capture_output=True, text=True, check=True)
    return [line.strip() for line in result.stdout.splitlines() if line.strip()]


def ci_commands() -> list:
    lines = (ROOT / ".ci" / "run").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_readme_starts_with_the_two_commands():
    quick, demo, test = bash_blocks((ROOT / "README.md").read_text())[:3]
    assert quick == ["make demo", "make test"]


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_readme_lists_what_make_runs():
    _, demo, test = bash_blocks((ROOT / "README.md").read_text())[:3]
    assert make_dry_run("demo") == demo
    assert make_dry_run("test") == test
    assert test[-1] == "python -m pytest -n 2"
    assert "--config configs/vp_digits.py" in demo[-3] and "--mode sample" in demo[-2]


def test_ci_pins_torch_then_runs_the_readme_test_command():
    commands = ci_commands()
    assert commands[-1] == "make test"
    pin = commands.index("python -m pip install torch==2.13.0")
    activate = commands.index("source .venv/bin/activate")
    assert activate < pin < len(commands) - 1
