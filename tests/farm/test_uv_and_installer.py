"""The two ways people install what the farm publishes, against the farm store served over
loopback HTTP: the real `uv` (PyPI) reading our download metadata, and install.sh in fresh
debootstrap roots of Debian 11, 12 and 13."""

from __future__ import annotations

import pytest

from buildfarm.roots import mounted, run_in_root

pytestmark = [pytest.mark.build, pytest.mark.farm]

TEST_VERSION = "3.13.5"


def test_uv_installs_and_runs_our_build(farm_store, killed_and_rerun, tmp_path, uv_python) -> None:
    uv_run = uv_python(farm_store.base_url)  # asserts that `uv python install` succeeded
    check = uv_run(
        "python", "-c",
        "import ssl, sqlite3, sys, sysconfig; print(sys.version_info[:3], sys.prefix, "
        "'--enable-shared' in sysconfig.get_config_var('CONFIG_ARGS'))",
    )  # fmt: skip
    assert check.returncode == 0, check.stderr
    prefix, shared = check.stdout.split()[-2:]
    assert "(3, 13, 5)" in check.stdout
    assert prefix.startswith(str(tmp_path / "pythons")), check.stdout  # uv's install of our tarball
    assert shared == "True"


@pytest.mark.parametrize(("codename", "platform"), [("bookworm", "debian-12"), ("bullseye", "debian-11")])
def test_installer_installs_the_newest_package_and_the_tarball(
    farm_store, killed_and_rerun, root_with_curl, install_sh, codename, platform
):
    root = root_with_curl(codename)
    with mounted(root):
        listed = install_sh(root, farm_store.base_url, "--list")
        assert listed.returncode == 0 and TEST_VERSION in listed.stdout, listed.stdout

        installed = install_sh(root, farm_store.base_url, "--version", TEST_VERSION)
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
        refused = install_sh(root, farm_store.base_url, "--version", TEST_VERSION, user="65534")
        assert refused.returncode != 0 and "needs root" in refused.stdout, refused.stdout
        tarball = install_sh(root, farm_store.base_url, "--prefix", "/tmp/my python", user="65534")
        assert tarball.returncode == 0, tarball.stdout
        ran = run_in_root(
            root, ["/tmp/my python/bin/python3", "-c", "import ssl, sqlite3, ctypes; print('ok')"]
        )
        assert "ok" in ran.stdout


def test_installer_on_a_platform_without_builds_says_so(
    farm_store, killed_and_rerun, root_with_curl, install_sh
) -> None:
    root = root_with_curl("trixie")
    with mounted(root):
        listed = install_sh(root, farm_store.base_url, "--list")
        assert listed.returncode == 0 and "no builds for debian-13/x86_64 yet" in listed.stdout
        refused = install_sh(root, farm_store.base_url, "--version", TEST_VERSION)
        assert refused.returncode != 0 and "nothing is built for debian-13/x86_64" in refused.stdout
        assert run_in_root(root, ["test", "-e", "/opt/python"], check=False).returncode != 0
