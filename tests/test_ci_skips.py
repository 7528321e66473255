"""Under CI a skipped test fails (tests/ci_skips.py), an expected failure does not; elsewhere a
skip stays a skip. A pytest run of its own over three small tests, with the plugin loaded."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SAMPLE = """
import pytest

def test_skipped():
    pytest.skip("no such tool")

@pytest.mark.xfail(reason="known")
def test_known():
    assert False

def test_fine():
    pass
"""


def run_sample(tmp_path: Path, ci: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")  # not the project's options
    (tmp_path / "test_sample.py").write_text(SAMPLE)
    env = {**os.environ, "CI": ci, "PYTHONPATH": str(Path(__file__).parent)}
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "ci_skips", "-p", "no:randomly", "-p", "no:xdist"]
    return subprocess.run([*argv, "-p", "no:cacheprovider", "-rA", "test_sample.py"],
                          cwd=tmp_path, env=env, capture_output=True, text=True)  # fmt: skip


def test_a_skip_fails_under_ci_and_an_expected_failure_does_not(tmp_path: Path) -> None:
    result = run_sample(tmp_path, "true")
    assert result.returncode == 1, result.stdout
    assert "1 failed, 1 passed, 1 xfailed" in result.stdout, result.stdout
    assert "skipped under CI, where every test must run: Skipped: no such tool" in result.stdout


def test_outside_ci_a_skip_is_a_skip(tmp_path: Path) -> None:
    result = run_sample(tmp_path, "")
    assert result.returncode == 0, result.stdout
    assert "1 passed, 1 skipped, 1 xfailed" in result.stdout, result.stdout
