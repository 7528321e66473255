"""Bad input and faults: nothing half-written, one clear line, the store untouched.

These do not compile anything: the failures happen before or at configure."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from builder_helpers import BUILD_PY, cli_build, cli_build_on_host, host_platform

HOST_PLATFORM = host_platform()
needs_host_platform = pytest.mark.skipif(
    HOST_PLATFORM is None, reason="this machine is not a registered platform"
)


def tree_snapshot(root: Path) -> dict[str, bytes]:
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def broken_mirror(tmp_path) -> tuple[str, str]:
    """A file:// mirror whose 3.13.5 tarball has a configure script that fails."""
    mirror = tmp_path / "mirror"
    (mirror / "3.13.5").mkdir(parents=True)
    tarball = mirror / "3.13.5" / "Python-3.13.5.tar.xz"
    script = (
        b"#!/bin/sh\necho 'checking for a working source tree... no'\n"
        b"echo 'configure: error: broken on purpose' >&2\nexit 1\n"
    )
    with tarfile.open(tarball, "w:xz") as archive:
        info = tarfile.TarInfo("Python-3.13.5/configure")
        info.size, info.mode = len(script), 0o755
        archive.addfile(info, io.BytesIO(script))
    import hashlib

    return f"file://{mirror}", hashlib.sha256(tarball.read_bytes()).hexdigest()


@needs_host_platform
def test_checksum_mismatch_aborts_before_configure(tmp_path, source_mirror):
    store = tmp_path / "store"
    store.mkdir()  # `build` refuses a named store that does not exist
    code, output = cli_build_on_host(
        store, source_mirror, "--optimization", "none", "--source-sha256", "0" * 64
    )
    assert code == 1, output
    assert "phase verify FAILED: sha256 mismatch" in output
    assert "phase configure" not in output
    assert not (store / "builds").exists()
    failure = json.loads((store / f"logs/3.13.5/{HOST_PLATFORM}/x86_64/1/failure.json").read_text())
    assert failure["phase"] == "verify" and "expected " + "0" * 64 in failure["reason"]
    assert (store / f"logs/3.13.5/{HOST_PLATFORM}/x86_64/1/build.log").exists()


@needs_host_platform
def test_a_file_mirror_without_the_tarball_fails_the_fetch_in_one_line(tmp_path):
    """`build` takes a file:// mirror as it is (only `run` checks the directory first): a
    missing tarball is the fetch phase's failure naming the URL, not a traceback."""
    store, mirror = tmp_path / "store", tmp_path / "empty-mirror"
    store.mkdir()
    mirror.mkdir()
    code, output = cli_build_on_host(
        store, f"file://{mirror}", "--optimization", "none", "--source-sha256", "0" * 64
    )
    assert code == 1, output
    url = f"file://{mirror}/3.13.5/Python-3.13.5.tar.xz"
    assert f"phase fetch FAILED: cannot copy {url}: No such file or directory" in output
    assert "Traceback" not in output and not (store / "builds").exists()
    failure = json.loads((store / f"logs/3.13.5/{HOST_PLATFORM}/x86_64/1/failure.json").read_text())
    assert failure["phase"] == "fetch" and url in failure["reason"]


@needs_host_platform
def test_failing_configure_leaves_no_artifacts_and_shows_the_tail(tmp_path, broken_mirror):
    mirror, digest = broken_mirror
    store = tmp_path / "store"
    store.mkdir()  # `build` refuses a named store that does not exist
    code, output = cli_build_on_host(store, mirror, "--optimization", "none", "--source-sha256", digest)
    assert code == 1, output
    assert "phase configure FAILED" in output
    assert "configure: error: broken on purpose" in output  # the failing phase's last lines
    assert "FAILED in phase configure" in output  # the CLI's one-line summary
    assert not (store / "builds").exists()
    failure = json.loads((store / f"logs/3.13.5/{HOST_PLATFORM}/x86_64/1/failure.json").read_text())
    assert failure["phase"] == "configure"
    assert any("broken on purpose" in line for line in failure["tail"])


@needs_host_platform
def test_existing_build_is_never_overwritten(tmp_path, source_mirror, source_sha256):
    store = tmp_path / "store"
    cell = store / f"builds/3.13.5/{HOST_PLATFORM}/x86_64/1"
    cell.mkdir(parents=True)
    (cell / "manifest.json").write_text('{"published": "before"}')
    before = tree_snapshot(store)
    # The CLI refuses an explicit --build that exists...
    code, output = cli_build_on_host(store, source_mirror, "--build", "1")
    assert code == 2
    assert output.strip().count("\n") == 0 and "already exists" in output
    assert tree_snapshot(store) == before
    # ...and so does the driver itself, before fetching anything.
    spec = {
        "version": "3.13.5", "platform": HOST_PLATFORM, "arch": "x86_64", "build": 1,
        "source": {"url": f"{source_mirror}/3.13.5/Python-3.13.5.tar.xz", "sha256": source_sha256},
        "prefix": "/opt/python/3.13.5", "optimization": "none", "store": str(store),
        "artifact_dir": f"builds/3.13.5/{HOST_PLATFORM}/x86_64/1",
    }  # fmt: skip
    result = subprocess.run(
        [sys.executable, str(BUILD_PY)],
        env={**os.environ, "BUILD_SPEC": json.dumps(spec)},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "phase preflight FAILED" in result.stdout and "never overwritten" in result.stdout
    assert "phase fetch" not in result.stdout
    assert (cell / "manifest.json").read_text() == '{"published": "before"}'
    assert tree_snapshot(store) == before  # not even a failure record
    assert not (store / "builds" / "3.13.5" / HOST_PLATFORM / "x86_64" / "2").exists()


@needs_host_platform
def test_next_free_build_number(tmp_path, source_mirror):
    """Without --build: one past every build number in use (published or failed)."""
    store = tmp_path / "store"
    (store / f"builds/3.13.5/{HOST_PLATFORM}/x86_64/1").mkdir(parents=True)
    (store / f"logs/3.13.5/{HOST_PLATFORM}/x86_64/2").mkdir(parents=True)
    (store / f"logs/3.13.5/{HOST_PLATFORM}/x86_64/2/failure.json").write_text("{}")
    (store / f"builds/3.13.5/{HOST_PLATFORM}/x86_64/1/manifest.json").write_text("{}")
    code, output = cli_build_on_host(store, source_mirror, "--source-sha256", "1" * 64)
    assert code == 1
    assert "build 3 (" in output
    assert (store / f"logs/3.13.5/{HOST_PLATFORM}/x86_64/3/failure.json").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["3.12", "--platform", "debian-12"], "unknown series '3.12'"),
        (["3.13.5.1", "--platform", "debian-12"], "malformed Python version"),
        (["3.13.5", "--platform", "debian-99"], "unknown platform 'debian-99'"),
        (["3.13.5", "--platform", "debian-12", "--arch", "riscv64"], "unknown arch 'riscv64'"),
        (["3.13.5", "--platform", "debian-12", "--source-sha256", "XYZ"], "malformed --source-sha256"),
        (["3.99.1", "--platform", "debian-12"], "no known sha256 for Python-3.99.1.tar.xz"),
        (["3.13.5", "--platform", "debian-12", "--source-mirror", "ftp://x"], "must be an http://"),
        (["3.13.5", "--platform", "debian-12", "--store", "gs://bucket/x"], "unsupported store"),
        (["3.13.5", "--platform", "rhel-9", "--runner", "host"], "host runner: this machine is"),
        (["3.13.5", "--platform", "rhel-9", "--runner", "chroot"], "not a Debian/Ubuntu platform"),
        (["3.13.5", "--platform", "debian-12", "--runner", "docker"], "no Docker engine"),
    ],
)
def test_bad_cli_input_is_one_line_and_touches_nothing(tmp_path, args, message, monkeypatch):
    # No engine for the docker case, even where one runs: the client points at no socket.
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    store = tmp_path / "store"
    code, output = cli_build([*args, "--store", str(store)] if "--store" not in args else args)
    assert code == 2, output
    lines = output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], output
    assert not store.exists()


@pytest.mark.parametrize("bad", ["0", "01", "-1", "1_0", " 3", "\u0663", "10000000000"])
def test_a_bad_build_number_is_refused_by_name_before_anything_is_written(tmp_path, bad, capsys):
    """The store's own spelling (layout.BUILD_NUMBER), as `runtime build --build` takes it:
    int() would take an Arabic-Indic three or 1_0, and 10000000000 is beyond what the store
    lists as a build. argparse refuses it (its usage, then the error line)."""
    from buildfarm.cli import main

    store = tmp_path / "store"
    with pytest.raises(SystemExit) as exited:
        main(["build", "3.13.5", "--platform", "debian-12", "--build", bad, "--store", str(store)])
    assert exited.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.endswith(f"argument --build: invalid build number {bad!r} (1 to 999999999, no leading zeros)")
    assert not store.exists()


def test_driver_names_missing_build_dependencies(tmp_path, build_py):
    """Preflight lists the registry's build dependencies that are not installed."""
    registry = build_py.load_platforms()
    registry["families"]["deb"]["common_build_dependencies"].append("buildfarm-no-such-package")
    path = tmp_path / "platforms.json"
    path.write_text(json.dumps(registry))
    spec = {
        "version": "3.13.5", "platform": "debian-12", "arch": "x86_64", "build": 1,
        "source": {"url": "file:///nonexistent/Python-3.13.5.tar.xz", "sha256": "0" * 64},
        "prefix": "/opt/python/3.13.5", "optimization": "none", "store": str(tmp_path / "store"),
        "artifact_dir": "builds/3.13.5/debian-12/x86_64/1",
    }  # fmt: skip
    if not Path("/usr/bin/dpkg-query").exists():
        pytest.skip("not a dpkg system")
    result = subprocess.run(
        [sys.executable, str(BUILD_PY)],
        env={**os.environ, "BUILD_SPEC": json.dumps(spec), "BUILDFARM_PLATFORMS": str(path)},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "missing build dependencies: " in result.stdout and "buildfarm-no-such-package" in result.stdout
    assert not (tmp_path / "store" / "builds").exists()
