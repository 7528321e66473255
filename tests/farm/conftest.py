"""Farm test fixtures: the two ways people install what a store serves, the real uv (PyPI)
reading its download metadata and install.sh run inside a fresh Debian root."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from buildfarm.roots import run_in_root

TEST_VERSION = "3.13.5"
UV = str(Path(sys.executable).parent / "uv")

Completed = subprocess.CompletedProcess[str]


def run_install_sh(root: Path, base_url: str, *args: str, user: str | None = None) -> Completed:
    """`curl -fsSL <base>/install.sh | bash -s -- ARGS` inside root (values passed as argv),
    as `user` when given."""
    script = 'base="$1"; shift; curl -fsSL "$base/install.sh" | bash -s -- "$@"'
    argv = ["bash", "-c", script, "install", base_url, *args]
    if user is not None:
        argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *argv]
    return run_in_root(root, argv, check=False)


@pytest.fixture
def install_sh() -> Callable[..., Completed]:
    """install_sh(root, base_url, *args, user=None): run_install_sh."""
    return run_install_sh


@pytest.fixture
def root_with_curl(fresh_root) -> Callable[[str], Path]:
    """root_with_curl(codename) -> a fresh root of that Debian with curl and the CA
    certificates: what install.sh's one-liner needs."""

    return lambda codename: fresh_root(codename, ("ca-certificates", "curl"))


@pytest.fixture
def uv_python(tmp_path: Path) -> Callable[[str], Callable[..., Completed]]:
    """uv_python(base_url) -> uv_run: the real uv, reading the debian-12 download metadata served
    at base_url (its installs, cache and home under tmp_path), has installed 3.13.5 from it;
    uv_run(*argv) is `uv run --no-project --python 3.13.5 ARGV` with the same settings."""

    def install(base_url: str) -> Callable[..., Completed]:
        env = {
            "PATH": os.environ["PATH"],
            "HOME": str(tmp_path),
            "UV_PYTHON_DOWNLOADS_JSON_URL": f"{base_url}/download-metadata/debian-12.json",
            "UV_PYTHON_INSTALL_DIR": str(tmp_path / "pythons"),
            "UV_CACHE_DIR": str(tmp_path / "cache"),
            "UV_PYTHON_PREFERENCE": "only-managed",
            "UV_NO_CONFIG": "1",
        }
        installed = subprocess.run(
            [UV, "python", "install", TEST_VERSION], env=env, capture_output=True, text=True
        )
        assert installed.returncode == 0, installed.stderr

        def uv_run(*argv: str) -> Completed:
            command = [UV, "run", "--no-project", "--python", TEST_VERSION, *argv]
            return subprocess.run(command, env=env, capture_output=True, text=True, cwd=tmp_path)

        return uv_run

    return install
