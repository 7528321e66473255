"""After a --prefix install, install.sh runs the installed python3 once to import the modules
that link system libraries (A1: the tarball is not self-contained) and, if some fail, says
which and the command that installs the platform's runtime packages (baked in from the
registry at publishing), or where the build's manifest lists them. The install stands.

The tarball's python3 is the host's interpreter behind a wrapper whose PYTHONPATH shadows
the checked modules with stubs: those told to fail raise the ImportError a missing library
gives; the check itself is install.sh's, run for real."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from buildfarm.catalog import render_installer
from buildfarm.platforms import load_registry

from .test_install_script import _publish, run_installer

VERSION = "3.13.5"
CHECKED = ["ssl", "sqlite3", "readline", "curses", "dbm/__init__", "dbm/gnu", "lzma", "bz2", "zlib"]
CHECKED += ["ctypes", "_uuid"]
OS_RELEASE = {
    "debian-12": 'ID=debian\nVERSION_ID="12"\n',
    "rhel-9": 'ID=rocky\nVERSION_ID="9.4"\nID_LIKE="rhel centos fedora"\n',
    "opensuse-160": 'ID=opensuse-leap\nVERSION_ID="16.0"\n',
}
WRAPPER = f"""#!/bin/sh
# The host's python with the stubs first on its path (-I, which would drop PYTHONPATH, is dropped).
[ "$1" = -I ] && shift
PYTHONPATH="$(dirname "$0")/../shadow" exec {sys.executable} "$@"
"""


def _tarball(failing: dict[str, str]) -> bytes:
    """python/bin/python3 (the wrapper) and python/shadow/: a stub per checked module, those in
    failing raising ImportError(failing[name])."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        files = {"python/bin/python3": WRAPPER}
        for name in CHECKED:
            module = name.removesuffix("/__init__")
            why = failing.get(module.replace("/", "."))
            files[f"python/shadow/{name}.py"] = f"raise ImportError({why!r})\n" if why else ""
        for path, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(path)
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _store(root: Path, failing: dict[str, str]) -> Path:
    root.mkdir()
    data = _tarball(failing)
    cells = {
        platform: {"x86_64": _publish(root, VERSION, platform, "x86_64", 1, data)} for platform in OS_RELEASE
    }
    catalog = {"schema_version": 1, "python_versions": [VERSION], "builds": {VERSION: cells}}
    (root / "versions.json").write_text(json.dumps(catalog))
    return root


MISSING = {
    "ssl": "libssl.so.3: cannot open shared object file: No such file or directory",
    "sqlite3": "libsqlite3.so.0: cannot open shared object file: No such file or directory",
}


def _published(tmp_path: Path, store: Path) -> Path:
    script = tmp_path / "published-install.sh"
    script.write_bytes(render_installer(f"file://{store}"))
    return script


@pytest.mark.parametrize(
    ("platform", "command"),
    [
        ("debian-12", "apt-get install -y"),
        ("rhel-9", "dnf install -y"),
        ("opensuse-160", "zypper install -y"),
    ],
)
def test_modules_that_do_not_import_are_named_with_the_command_that_installs_the_packages(
    tmp_path, platform, command
) -> None:
    store = _store(tmp_path / "store", MISSING)
    prefix = tmp_path / "py"
    result = run_installer(
        tmp_path,
        None,
        "--prefix",
        str(prefix),
        script=_published(tmp_path, store),
        os_release=OS_RELEASE[platform],
    )
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    installed = lines.index(f"install.sh: installed Python {VERSION} into {prefix}: run {prefix}/bin/python3")
    assert lines[installed + 1] == (
        f"install.sh: warning: Python {VERSION} in {prefix} cannot import ssl ({MISSING['ssl']}); "
        f"sqlite3 ({MISSING['sqlite3']}): the tarball uses this system's libraries (OpenSSL, SQLite, "
        "readline, ncurses, gdbm, ...), and some are not installed"
    )
    packages = " ".join(load_registry().get(platform).runtime_dependencies)
    assert lines[installed + 2] == f"install.sh: install what {platform} needs, as root: {command} {packages}"
    assert len(lines) == installed + 3
    assert (prefix / "bin" / "python3").exists()


def test_a_copy_without_the_baked_packages_points_at_the_manifest(tmp_path) -> None:
    store = _store(tmp_path / "store", {"dbm.gnu": "libgdbm.so.6: cannot open shared object file"})
    result = run_installer(tmp_path, store, "--prefix", str(tmp_path / "py"))
    assert result.returncode == 0, result.stderr
    assert (
        "cannot import dbm.gnu (libgdbm.so.6: cannot open shared object file): the tarball" in result.stderr
    )
    manifest = f"file://{store}/builds/{VERSION}/debian-12/x86_64/1/manifest.json"
    assert result.stderr.endswith(
        f"install.sh: the packages debian-12 needs are listed in {manifest} (platform.runtime_dependencies)\n"
    )


def test_nothing_is_said_when_every_module_imports(tmp_path) -> None:
    store = _store(tmp_path / "store", {})
    prefix = tmp_path / "py"
    result = run_installer(tmp_path, None, "--prefix", str(prefix), script=_published(tmp_path, store))
    assert result.returncode == 0, result.stderr
    assert result.stderr.endswith(f"installed Python {VERSION} into {prefix}: run {prefix}/bin/python3\n")
    assert "warning" not in result.stderr


def test_every_platform_s_runtime_packages_are_baked_in() -> None:
    script = render_installer("https://x.org").decode()
    line = next(line for line in script.splitlines() if line.startswith("RUNTIME_PACKAGES="))
    baked = dict(entry.split("=") for entry in line.removeprefix("RUNTIME_PACKAGES=").strip('"').split())
    registry = load_registry()
    assert baked == {pid: ",".join(p.runtime_dependencies) for pid, p in registry.platforms.items()}
    subprocess.run(["bash", "-n", "-c", script], check=True)
