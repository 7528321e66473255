"""A store is portable: the farm store (its first run's real builds) copied to another
directory, re-published for a loopback URL with `buildfarm reindex`, served by `buildfarm
serve`, installs with install.sh in a fresh Debian 12 root and with the real uv, and never
serves the farm's internal state."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from buildfarm.roots import mounted, run_in_root

pytestmark = [pytest.mark.build, pytest.mark.farm]

TEST_VERSION = "3.13.5"


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.fixture
def served_copy(farm_store, first_run, tmp_path) -> Iterator[tuple[Path, str]]:
    """The farm store copied elsewhere, served by `buildfarm serve` on a free loopback port and
    re-published for that URL: (the copy, its URL without a trailing '/')."""
    assert first_run.returncode == 0, first_run.output
    copy = tmp_path / "elsewhere" / "dist"
    shutil.copytree(farm_store.store, copy, symlinks=True)
    env = {k: v for k, v in os.environ.items() if k != "BUILDFARM_PUBLIC_BASE_URL"}
    with (tmp_path / "serve.log").open("w") as log:
        server = subprocess.Popen(
            [farm_store.buildfarm, "serve", "--store", str(copy), "--port", "0"],
            stdout=subprocess.PIPE, stderr=log, text=True, env=env,
        )  # fmt: skip
    try:
        announced = server.stdout.readline()
        assert " at http://127.0.0.1:" in announced, announced
        url = announced.split(" at ", 1)[1].split()[0].rstrip("/")
        reindexed = subprocess.run(
            [farm_store.buildfarm, "reindex", "--store", str(copy), "--base-url", f"{url}/"],
            capture_output=True, text=True, env=env,
        )  # fmt: skip
        assert reindexed.returncode == 0 and reindexed.stderr == "", reindexed.stderr
        yield copy, url
    finally:
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=30) == 0
        server.stdout.close()


def test_a_moved_store_is_served_and_installs_with_install_sh_and_uv(
    farm_store, first_run, served_copy, root_with_curl, install_sh, uv_python, tmp_path
) -> None:
    copy, url = served_copy
    # Nothing derived points at the farm's own store any more.
    for key in ("install.sh", "download-metadata/debian-12.json", "download-metadata/debian-11.json"):
        text = (copy / key).read_text()
        assert farm_store.base_url not in text and str(farm_store.store) not in text, key
        assert url in text, key

    # The farm's internal state exists in the copy, and is never served.
    internal = [p for prefix in ("claims", "plans", "runs", ".locks") for p in (copy / prefix).rglob("*")]
    assert any(p.is_file() for p in internal)
    for path in [p for p in internal if p.is_file()] + [copy / "claims", copy / "plans", copy / "logs"]:
        assert _status(f"{url}/{path.relative_to(copy).as_posix()}") == 404, path
    assert _status(f"{url}/claims/") == 404 and _status(f"{url}/plans/") == 404
    assert _status(f"{url}/logs/") == 404

    # install.sh in a fresh Debian 12 root: its default base URL is the server (no --base-url),
    # a series picks the newest 3.13 built for it.
    root = root_with_curl("bookworm")
    with mounted(root):
        installed = install_sh(root, url, "--version", "3.13")
        assert installed.returncode == 0, installed.stdout
        assert f"the newest built for debian-12/x86_64 is {TEST_VERSION}" in installed.stdout
        assert "sha256 verified" in installed.stdout
        ran = run_in_root(
            root,
            [f"/opt/python/{TEST_VERSION}/bin/python3", "-c", "import ssl, sqlite3, sys; print(sys.version)"],
        )
        assert ran.stdout.startswith(TEST_VERSION), ran.stdout

    # The real uv, reading the served download metadata.
    uv_run = uv_python(url)  # asserts that `uv python install` succeeded
    check = uv_run("python", "-c", "import ssl, sqlite3, sys; print(sys.version_info[:3], sys.prefix)")
    assert check.returncode == 0, check.stderr
    assert "(3, 13, 5)" in check.stdout and str(tmp_path / "pythons") in check.stdout, check.stdout
