"""Bad input to `buildfarm lambda layer|deps`: one line naming the value on stderr, exit 2,
and nothing in --out. The Python of `layer` must be a published farm build: a tarball with
manifest.json beside it listing its sha256 and size (a small stand-in tarball here; nothing gets
far enough to run it)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from buildfarm.cli.lambda_cmds import interpreter_path

BUILDFARM = str(Path(sys.executable).parent / "buildfarm")
HERMETIC_PIP = {"PIP_CONFIG_FILE": os.devnull, "PIP_NO_CACHE_DIR": "1"}
TARBALL = "python-3.13.5-debian-12-x86_64.tar.gz"


def publish_stand_in(build_dir: Path) -> Path:
    """A build directory with a tarball and the manifest that lists it."""
    build_dir.mkdir(parents=True)
    tarball = build_dir / TARBALL
    with tarfile.open(tarball, "w:gz") as archive:
        info = tarfile.TarInfo("python/bin/python3.13")
        content = b"#!/bin/sh\n"
        info.size, info.mode = len(content), 0o755
        archive.addfile(info, io.BytesIO(content))
    artifact = {"file": TARBALL, "type": "tarball", "size": tarball.stat().st_size}
    artifact["sha256"] = hashlib.sha256(tarball.read_bytes()).hexdigest()
    manifest = {
        "artifacts": [artifact],
        "python": {"version": "3.13.5"},
        "platform": {"id": "debian-12", "arch": "x86_64", "glibc": "glibc-2.36"},
    }
    (build_dir / "manifest.json").write_text(json.dumps(manifest))
    return tarball


def run_lambda(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **HERMETIC_PIP}
    return subprocess.run([BUILDFARM, "lambda", *args], capture_output=True, text=True, env=env, timeout=600)


def assert_refused(result: subprocess.CompletedProcess, out: Path, *named: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("buildfarm lambda: error: "), line
    for value in named:
        assert value in line, line
    assert not out.exists()


def test_an_absent_python_is_refused(tmp_path):
    absent = tmp_path / TARBALL
    result = run_lambda("layer", "--python", str(absent), "--out", str(tmp_path / "out"))
    assert_refused(result, tmp_path / "out", str(absent), "does not exist")


def test_a_tarball_without_a_manifest_is_not_published(tmp_path):
    tarball = publish_stand_in(tmp_path / "build")
    (tmp_path / "build" / "manifest.json").unlink()
    result = run_lambda("layer", "--python", str(tarball), "--out", str(tmp_path / "out"))
    assert_refused(result, tmp_path / "out", "is not a published farm build: no manifest.json")


def test_a_tarball_that_differs_from_its_manifest_is_refused(tmp_path):
    tarball = publish_stand_in(tmp_path / "build")
    with tarball.open("ab") as stream:
        stream.write(b"\0")
    result = run_lambda("layer", "--python", str(tarball), "--out", str(tmp_path / "out"))
    assert_refused(result, tmp_path / "out", "differs from the build's manifest.json")


def test_an_unpublished_url_is_refused(tmp_path, http_dir_server):
    base = http_dir_server(tmp_path / "store")
    url = f"{base}/builds/3.13.5/debian-12/x86_64/9/{TARBALL}"
    (tmp_path / "store").mkdir()
    result = run_lambda("layer", "--python", url, "--out", str(tmp_path / "out"))
    assert_refused(result, tmp_path / "out", "is not published: HTTP 404")


@pytest.mark.parametrize(
    "platform",
    [
        {"id": "debian-12", "arch": "x86_64", "glibc": "glibc-2.\u0663\u0666"},
        {"id": "debian-12", "arch": "x86_64", "glibc": 2.36},
        {"id": "debian-12", "arch": "x86_64", "glibc": "2.36\n"},
        "debian-12",
        {"arch": "x86_64"},
    ],
)
def test_a_manifest_with_a_malformed_platform_is_refused_before_anything_is_written(tmp_path, platform):
    tarball = publish_stand_in(tmp_path / "build")
    manifest_path = tarball.parent / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["platform"] = platform
    manifest_path.write_text(json.dumps(manifest))
    result = run_lambda("layer", "--python", str(tarball), "--out", str(tmp_path / "out"))
    assert_refused(result, tmp_path / "out", "manifest.json beside it is not a farm build manifest")


def test_a_python_for_another_arch_is_refused(tmp_path):
    tarball = publish_stand_in(tmp_path / "build")
    result = run_lambda("layer", "--python", str(tarball), "--arch", "arm64", "--out", str(tmp_path / "out"))
    assert_refused(result, tmp_path / "out", "is for x86_64, not aarch64")


def test_a_python_built_on_a_newer_glibc_than_the_targets_is_refused(tmp_path):
    """The stand-in was built on debian-12 (glibc 2.36): provided.al2023 (2.34) could not start
    it, so no layer, exit 2, and the way out named; --glibc 2.36 states a runtime that has it."""
    tarball = publish_stand_in(tmp_path / "build")
    result = run_lambda("layer", "--python", str(tarball), "--out", str(tmp_path / "out"))
    assert_refused(
        result,
        tmp_path / "out",
        "built on debian-12 (glibc 2.36), newer than the target's glibc 2.34",
        "use an amazonlinux-2023 build",
        "--glibc 2.36",
    )
    stated = run_lambda("layer", "--python", str(tarball), "--glibc", "2.36", "--out", str(tmp_path / "out"))
    assert stated.returncode == 2 and "newer than the target's glibc" not in stated.stderr  # got further
    assert "is Python" in stated.stderr  # the stand-in python3.13 cannot run pip


@pytest.mark.parametrize(
    ("options", "named"),
    [
        (["--arch", "sparc64"], "'sparc64'"),
        (["--glibc", "2.x"], "'2.x'"),
        (["--glibc", "2.34.1"], "'2.34.1'"),
        (["--requirements", "absent.txt"], "absent.txt does not exist"),
    ],
)
def test_bad_options_are_named(tmp_path, options, named):
    tarball = publish_stand_in(tmp_path / "build")
    result = run_lambda("layer", "--python", str(tarball), *options, "--out", str(tmp_path / "out"))
    assert_refused(result, tmp_path / "out", named)


def deps(
    package_index, tmp_path: Path, *lines: str, extra: tuple[str, ...] = ()
) -> subprocess.CompletedProcess:
    wanted = tmp_path / "requirements.txt"
    wanted.write_text("".join(line + "\n" for line in lines))
    return run_lambda(
        "deps", "--requirements", str(wanted), "--interpreter", sys.executable,
        "--index-url", package_index.url, "--out", str(tmp_path / "out"), *extra,
    )  # fmt: skip


def test_a_bad_hash_is_refused(package_index, tmp_path):
    result = deps(package_index, tmp_path, "lf-puresdist==1.0 --hash=sha256:" + "0" * 64)
    digest = package_index.sha256["lf_puresdist-1.0.tar.gz"]
    assert_refused(result, tmp_path / "out", "hash mismatch for lf-puresdist==1.0", "0" * 64, f"got {digest}")


def test_an_unknown_project_is_refused(package_index, tmp_path):
    result = deps(package_index, tmp_path, "lf-nope")
    assert_refused(result, tmp_path / "out", "No matching distribution found for lf-nope")


def test_layers_over_the_size_limit_write_nothing(package_index, tmp_path):
    result = deps(package_index, tmp_path, "lf-puresdist", extra=("--limit-bytes", "100"))
    assert_refused(result, tmp_path / "out", "over the limit of", "(100 bytes): nothing written")


def test_a_missing_requirements_file_is_refused(tmp_path):
    result = run_lambda("deps", "--requirements", str(tmp_path / "nope.txt"), "--out", str(tmp_path / "out"))
    assert_refused(result, tmp_path / "out", "nope.txt does not exist")


def test_an_absent_interpreter_is_refused(tmp_path):
    wanted = tmp_path / "requirements.txt"
    wanted.write_text("six\n")
    absent = tmp_path / "bin" / "python3.13"
    result = run_lambda(
        "deps", "--requirements", str(wanted), "--interpreter", str(absent), "--out", str(tmp_path / "out")
    )
    assert_refused(result, tmp_path / "out", f"interpreter {absent} does not exist")


def test_an_interpreter_named_without_a_path_is_found_on_path(tmp_path, monkeypatch):
    """`--interpreter python3.13` as the README writes it: a command name is looked up on PATH,
    as a shell would; a path is taken as given; a name found nowhere is refused as given."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python-here").symlink_to(sys.executable)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    assert interpreter_path("python-here") == bin_dir / "python-here"
    assert interpreter_path("./python-here") == Path("./python-here")
    assert interpreter_path("python-nowhere") == Path("python-nowhere")
    wanted = tmp_path / "requirements.txt"
    wanted.write_text("six\n")
    out = tmp_path / "out"
    absent = run_lambda(
        "deps", "--requirements", str(wanted), "--interpreter", "python-nowhere", "--out", f"{out}"
    )
    assert_refused(absent, out, "interpreter python-nowhere does not exist")
