"""The installed `buildfarm` as a user runs it, in an environment of the test's making: no AWS
configuration or instance metadata, python.org unreachable at once. Shared by the CLI tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BUILDFARM = str(Path(sys.executable).with_name("buildfarm"))


def isolated_env(home: Path, **extra: str) -> dict[str, str]:
    """PATH and HOME only, no AWS credentials, config or instance metadata, plus extra."""
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
        "BUILDFARM_RELEASES_URL": "http://127.0.0.1:9/api",
        **extra,
    }


def run_cli(env: dict[str, str], *argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`buildfarm ARGV...` in env (and cwd), its output captured."""
    return subprocess.run(
        [BUILDFARM, *argv], env=env, cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def one_error_line(result: subprocess.CompletedProcess[str], command: str, *wanted: str) -> str:
    """The one line `buildfarm COMMAND` printed for a usage error (exit 2, no traceback), which
    holds every wanted text."""
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    line = result.stderr.strip()
    assert line.startswith(f"buildfarm {command}: error: "), line
    for text in wanted:
        assert text in line, line
    return line
