"""The two ways people install what the farm publishes, against the farm store served over
loopback HTTP: the real `uv` (PyPI) reading our download metadata, and install.sh in fresh
debootstrap roots of Debian 11, 12 and 13."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from buildfarm.roots import apt_install, mounted, run_in_root

pytestmark = [pytest.mark.build, pytest.mark.farm]

TEST_VERSION = "3.13.5"
UV = str(Path(sys.executable).parent / "uv")


def test_uv_installs_and_runs_our_build(farm_store, forced_run, tmp_path) -> None:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "UV_PYTHON_DOWNLOADS_JSON_URL": f"{farm_store.base_url}/download-metadata/debian-12.json",
        "UV_PYTHON_INSTALL_DIR": str(tmp_path / "pythons"),
        "UV_CACHE_DIR": str(tmp_path / "cache"),
        "UV_PYTHON_PREFERENCE": "only-managed",
        "UV_NO_CONFIG": "1",
    }
    install = subprocess.run([UV, "python", "install", TEST_VERSION], env=env, capture_output=True, text=True)
    assert install.returncode == 0, install.stderr
    check = subprocess.run(
        [UV, "run", "--no-project", "--python", TEST_VERSION, "python", "-c",
         "import ssl, sqlite3, sys, sysconfig; print(sys.version_info[:3], sys.prefix, "
         "'--enable-shared' in sysconfig.get_config_var('CONFIG_ARGS'))"],
        env=env, capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert check.returncode == 0, check.stderr
    prefix, shared = check.stdout.split()[-2:]
    assert "(3, 13, 5)" in check.stdout
    assert prefix.startswith(str(tmp_path / "pythons")), check.stdout  # uv's install of our tarball
    assert shared == "True"


def _install_sh(root: Path, base_url: str, *args: str, user: str | None = None):
    """`curl -fsSL <base>/install.sh | bash -s -- ARGS` inside root (values passed as argv)."""
    script = 'base="$1"; shift; curl -fsSL "$base/install.sh" | bash -s -- "$@"'
    argv = ["bash", "-c", script, "install", base_url, *args]
    if user is not None:
        argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *argv]
    return run_in_root(root, argv, check=False)


@pytest.mark.parametrize(("codename", "platform"), [("bookworm", "debian-12"), ("bullseye", "debian-11")])
def test_installer_installs_the_newest_package_and_the_tarball(
    farm_store, forced_run, fresh_root, codename, platform
):
    root = fresh_root(codename)
    apt_install(root, ["curl", "ca-certificates"])
    with mounted(root):
        listed = _install_sh(root, farm_store.base_url, "--list")
        assert listed.returncode == 0 and TEST_VERSION in listed.stdout, listed.stdout

        installed = _install_sh(root, farm_store.base_url, "--version", TEST_VERSION)
        assert installed.returncode == 0, installed.stdout
        assert "sha256 verified" in installed.stdout
        status = run_in_root(root, ["dpkg-query", "-W", "-f=${Version}", f"python-{TEST_VERSION}"])
        assert (
            status.stdout.strip()
            == f"{TEST_VERSION}-{farm_store.versions()['builds'][TEST_VERSION][platform]['x86_64']['build']}"
        )
        ran = run_in_root(
            root,
            [f"/opt/python/{TEST_VERSION}/bin/python3", "-c",
             "import ssl, sqlite3, lzma, bz2, ctypes, readline, uuid, zlib, decimal, dbm.gnu, curses;"
             "print('ok')"],
        )  # fmt: skip
        assert "ok" in ran.stdout
        # Without root a package install is refused with what to do instead, and the tarball
        # installs anywhere (it runs here because the .deb above pulled in the runtime
        # libraries; the tarball itself installs no dependencies).
        refused = _install_sh(root, farm_store.base_url, "--version", TEST_VERSION, user="65534")
        assert refused.returncode != 0 and "needs root" in refused.stdout, refused.stdout
        tarball = _install_sh(root, farm_store.base_url, "--prefix", "/tmp/my python", user="65534")
        assert tarball.returncode == 0, tarball.stdout
        ran = run_in_root(
            root, ["/tmp/my python/bin/python3", "-c", "import ssl, sqlite3, ctypes; print('ok')"]
        )
        assert "ok" in ran.stdout


def test_installer_on_a_platform_without_builds_says_so(farm_store, forced_run, fresh_root) -> None:
    root = fresh_root("trixie")
    apt_install(root, ["curl", "ca-certificates"])
    with mounted(root):
        listed = _install_sh(root, farm_store.base_url, "--list")
        assert listed.returncode == 0 and "no builds for debian-13/x86_64 yet" in listed.stdout
        refused = _install_sh(root, farm_store.base_url, "--version", TEST_VERSION)
        assert refused.returncode != 0 and "nothing is built for debian-13/x86_64" in refused.stdout
        assert run_in_root(root, ["test", "-e", "/opt/python"], check=False).returncode != 0
