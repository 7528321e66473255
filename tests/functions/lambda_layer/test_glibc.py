"""A wheel compiled here is refused for a target whose glibc is older than the GLIBC_ symbol
versions its shared objects need (lambda_layer/glibc.py), and the sdist build falls back to its
pure-Python build then (sdists.py). A real extension, compiled here with gcc; objdump -T is the
independent witness of what it needs."""

from __future__ import annotations

import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest
from conftest import HOST_ARCH, PYTHON_XY

from buildfarm.lambda_layer import sdists
from buildfarm.lambda_layer.glibc import glibc_problem, host_glibc, needed_glibc, version_tuple
from buildfarm.lambda_layer.piprun import PipRun
from buildfarm.lambda_layer.tags import OLDEST_GLIBC_MINOR, Target

XY = PYTHON_XY.replace(".", "")
# memcpy (GLIBC_2.14 on x86_64) and pthread_create (GLIBC_2.34 since libpthread joined libc).
SOURCE = """#include <pthread.h>
#include <string.h>
static void *run(void *arg) { return arg; }
int copy_and_start(char *to, const char *from, size_t n) {
    pthread_t thread;
    memcpy(to, from, n);
    return pthread_create(&thread, 0, run, 0);
}
"""


@pytest.fixture(scope="module")
def extension(tmp_path_factory) -> tuple[Path, str]:
    """A shared object compiled here, and the newest GLIBC_ version objdump says it needs."""
    if not (shutil.which("gcc") and shutil.which("objdump") and shutil.which("readelf")):
        pytest.skip("needs gcc and binutils")
    work = tmp_path_factory.mktemp("extension")
    (work / "ext.c").write_text(SOURCE)
    library = work / f"_ext.cpython-{XY}-{HOST_ARCH}-linux-gnu.so"
    subprocess.run(
        ["gcc", "-shared", "-fPIC", "-O0", "-fno-builtin", "-o", str(library), str(work / "ext.c")],
        check=True,
    )
    symbols = subprocess.run(["objdump", "-T", str(library)], capture_output=True, text=True, check=True)
    versions = re.findall(r"\(GLIBC_([0-9.]+)\)", symbols.stdout)
    newest = max(versions, key=version_tuple)
    if version_tuple(newest)[1] - 1 < OLDEST_GLIBC_MINOR[HOST_ARCH]:
        pytest.skip(f"GLIBC_{newest} is this arch's oldest manylinux glibc: no older target")
    return library, newest


def wheel_with(directory: Path, name: str, library: Path | None) -> Path:
    wheel = directory / name
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("ext/__init__.py", "")
        if library is not None:
            archive.write(library, f"ext/{library.name}")
    return wheel


def older(version: str) -> str:
    major, minor = version_tuple(version)[:2]
    return f"{major}.{minor - 1}"


def test_the_newest_needed_glibc_version_is_read_from_the_shared_object(extension):
    library, newest = extension
    assert needed_glibc(library) == newest
    assert version_tuple(newest) <= version_tuple(host_glibc())  # made here, against this glibc


def test_a_wheel_compiled_here_needing_a_newer_glibc_than_the_targets_is_refused(extension, tmp_path):
    library, newest = extension
    wheel = wheel_with(tmp_path, f"ext-1.0-cp{XY}-cp{XY}-linux_{HOST_ARCH}.whl", library)
    assert glibc_problem(wheel, Target(PYTHON_XY, HOST_ARCH, newest)) is None
    target = Target(PYTHON_XY, HOST_ARCH, older(newest))
    assert glibc_problem(wheel, target) == (
        f"ext/{library.name} needs GLIBC_{newest} (compiled here against glibc {host_glibc()}), "
        f"newer than the target's glibc {older(newest)}"
    )
    pure = wheel_with(tmp_path, "pure-1.0-py3-none-any.whl", None)
    assert glibc_problem(pure, Target(PYTHON_XY, HOST_ARCH, "2.17")) is None


def stand_in_pip(library: Path, *, pure_retry: bool):
    """run_pip for build_sdist: `pip wheel` makes the compiled wheel, or (pure_retry) a pure
    one when the compilers are the failing stubs (the retry's environment)."""

    def run_pip(interpreter, args, env=None, index_url=None) -> PipRun:
        out = Path(args[args.index("--wheel-dir") + 1])
        if env is not None and pure_retry:
            wheel_with(out, "ext-1.0-py3-none-any.whl", None)
        else:
            wheel_with(out, f"ext-1.0-cp{XY}-cp{XY}-linux_{HOST_ARCH}.whl", library)
        return PipRun(0, "")

    return run_pip


def test_an_sdist_compiled_against_a_newer_glibc_falls_back_to_pure_python_or_fails(
    extension, tmp_path, monkeypatch
):
    library, newest = extension
    sdist = tmp_path / "ext-1.0.tar.gz"
    target = Target(PYTHON_XY, HOST_ARCH, older(newest))
    monkeypatch.setattr(sdists, "run_pip", stand_in_pip(library, pure_retry=True))
    fell_back = sdists.build_sdist(Path("python3"), sdist, tmp_path / "a", target)
    assert fell_back.pure_retry and fell_back.wheel == tmp_path / "a" / "ext-1.0-py3-none-any.whl"
    monkeypatch.setattr(sdists, "run_pip", stand_in_pip(library, pure_retry=False))
    failed = sdists.build_sdist(Path("python3"), sdist, tmp_path / "b", target)
    assert failed.wheel is None and not (tmp_path / "b").exists()
    assert f"needs GLIBC_{newest}" in failed.reason and f"target's glibc {older(newest)}" in failed.reason
    assert failed.reason.startswith(f"build failed: the built wheel cannot run on {target.describe()}: ")
    kept = sdists.build_sdist(Path("python3"), sdist, tmp_path / "c", Target(PYTHON_XY, HOST_ARCH, newest))
    assert not kept.pure_retry and kept.wheel.name == f"ext-1.0-cp{XY}-cp{XY}-linux_{HOST_ARCH}.whl"
