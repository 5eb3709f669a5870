"""ruff lint and format, with the settings in pyproject.toml."""

import importlib.util
import subprocess
import sys

import pytest
from conftest import REPO

PATHS = ["attnforce", "integrators", "systems", "training", "tests", "bench", "examples"]


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]], ids=["lint", "format"])
def test_ruff(command):
    if importlib.util.find_spec("ruff") is None:
        pytest.skip("ruff is not installed (pip install -e '.[test]')")
    done = subprocess.run([sys.executable, "-m", "ruff", *command, *PATHS], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
