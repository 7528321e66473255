"""The dependency builder against the local index (conftest.py), on this machine's Python:
each project's outcome follows the algorithm and the report names it; the layer installs and
imports. Hermetic: pip sees only the loopback index (no configuration, no cache)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import HOST_ARCH, OTHER_ARCH, PYTHON_XY

from buildfarm.lambda_layer.deps import DepsResult, build_deps, install_wheels
from buildfarm.lambda_layer.tags import Target

BUILDFARM = str(Path(sys.executable).parent / "buildfarm")
XY = PYTHON_XY.replace(".", "")
HERMETIC_PIP = {"PIP_CONFIG_FILE": os.devnull, "PIP_NO_CACHE_DIR": "1"}
# pip resolving, downloading and building sdists (C extensions too): over a minute in all.
pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def hermetic_pip(monkeypatch):
    for name, value in HERMETIC_PIP.items():
        monkeypatch.setenv(name, value)


def requirements(directory: Path, *lines: str) -> Path:
    path = directory / "requirements.txt"
    path.write_text("".join(line + "\n" for line in lines))
    return path


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **HERMETIC_PIP}
    return subprocess.run([BUILDFARM, "lambda", *args], capture_output=True, text=True, env=env, timeout=600)


def deps_cli(package_index, requirements_file: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return run_cli(
        "deps", "--requirements", str(requirements_file), "--interpreter", sys.executable,
        "--index-url", package_index.url, "--out", str(out), *extra,
    )  # fmt: skip


@pytest.fixture(scope="module")
def mixed(package_index, tmp_path_factory) -> DepsResult:
    """The five projects built once for this machine's arch (glibc 2.34)."""
    work = tmp_path_factory.mktemp("mixed")
    wanted = requirements(work, "lf-manylinux", "lf-puresdist", "lf-needscc", "lf-speedups", "lf-broken")
    with pytest.MonkeyPatch.context() as patch:
        for name, value in HERMETIC_PIP.items():
            patch.setenv(name, value)
        return build_deps(
            wanted, Target(PYTHON_XY, HOST_ARCH), Path(sys.executable), work / "w", package_index.url
        )


def test_each_project_gets_the_outcome_the_algorithm_gives(mixed):
    result = mixed
    got = {package.name: package for package in result.packages}
    assert sorted(got) == ["lf-broken", "lf-manylinux", "lf-needscc", "lf-puresdist", "lf-speedups"]
    # A manylinux_2_28 wheel runs on glibc 2.34: used as the resolver chose it.
    assert (got["lf-manylinux"].outcome, got["lf-manylinux"].replaced) == ("wheel", None)
    assert got["lf-manylinux"].tags == [f"py3-none-manylinux_2_28_{HOST_ARCH}"]
    assert (got["lf-puresdist"].outcome, got["lf-puresdist"].tags) == ("built", ["py3-none-any"])
    assert got["lf-puresdist"].sdist == "lf_puresdist-1.0.tar.gz"
    assert (got["lf-needscc"].outcome, got["lf-needscc"].tags) == (
        "built",
        [f"cp{XY}-cp{XY}-linux_{HOST_ARCH}"],
    )
    # Its speedups need a header this machine lacks: the retry without a compiler makes it pure.
    assert (got["lf-speedups"].outcome, got["lf-speedups"].tags) == ("built-pure", ["py3-none-any"])
    assert got["lf-broken"].outcome == "failed"
    assert 'error: #error "lf-broken cannot be built"' in got["lf-broken"].reason
    assert "without a C compiler: error: compiling lf_broken_c failed" in got["lf-broken"].reason
    assert [package.name for package in result.failed] == ["lf-broken"]
    assert sorted(path.name for path in result.wheels) == sorted(p.wheel for p in result.packages if p.wheel)


def test_what_was_made_installs_and_imports(mixed, tmp_path):
    site = tmp_path / "python" / "lib" / f"python{PYTHON_XY}" / "site-packages"
    install_wheels(Path(sys.executable), mixed.wheels, Target(PYTHON_XY, HOST_ARCH), site)

    probe = (
        "import json, lf_manylinux, lf_needscc, lf_puresdist, lf_speedups\n"
        "print(json.dumps([lf_manylinux.ARCH, lf_needscc.lf_needscc_c.__name__, lf_puresdist.PURE,"
        " lf_speedups.FAST]))"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    imported = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True
    )
    assert json.loads(imported.stdout) == [HOST_ARCH, "lf_needscc_c", True, False]


def test_another_arch_gets_its_wheel_and_pure_builds_only(package_index, tmp_path):
    wanted = requirements(tmp_path, "lf-manylinux", "lf-speedups", "lf-puresdist")
    out = tmp_path / "out"

    made = deps_cli(package_index, wanted, out, "--arch", OTHER_ARCH)

    assert made.returncode == 0, made.stdout + made.stderr
    packages = {
        p["name"]: p for p in json.loads((out / "lambda-layers.json").read_text())["layers"][0]["packages"]
    }
    # The resolver chose this machine's wheel; the target's was fetched in its place.
    assert packages["lf-manylinux"]["replaced"] == f"lf_manylinux-1.0-py3-none-manylinux_2_28_{HOST_ARCH}.whl"
    assert packages["lf-manylinux"]["wheel"] == f"lf_manylinux-1.0-py3-none-manylinux_2_28_{OTHER_ARCH}.whl"
    assert packages["lf-speedups"]["outcome"] == "built-pure"
    with zipfile.ZipFile(out / "deps-layer.zip") as archive:
        names = archive.namelist()
        module = archive.read(f"python/lib/python{PYTHON_XY}/site-packages/lf_manylinux.py").decode()
    assert module == f"ARCH = {OTHER_ARCH!r}\n"
    assert not [name for name in names if name.endswith(".so")]


def test_a_required_extension_for_another_arch_is_a_failure_named(package_index, tmp_path):
    wanted = requirements(tmp_path, "lf-needscc")

    result = build_deps(
        wanted, Target(PYTHON_XY, OTHER_ARCH), Path(sys.executable), tmp_path / "w", package_index.url
    )

    (package,) = result.packages
    assert package.outcome == "failed"
    assert (
        f"the built wheel is cp{XY}-cp{XY}-linux_{HOST_ARCH}, which CPython {PYTHON_XY} on {OTHER_ARCH}"
        in (package.reason)
    )


def test_no_wheel_for_an_older_glibc_and_no_sdist_is_a_failure_named(package_index, tmp_path):
    wanted = requirements(tmp_path, "lf-manylinux")
    out = tmp_path / "out"

    made = deps_cli(package_index, wanted, out, "--glibc", "2.17")

    assert made.returncode == 1
    assert (
        made.stderr.strip()
        .splitlines()[-1]
        .startswith("buildfarm lambda: error: could not make: lf-manylinux")
    )
    assert [path.name for path in out.iterdir()] == ["lambda-layers.json"]  # the report, no layer
    (package,) = json.loads((out / "lambda-layers.json").read_text())["layers"][0]["packages"]
    assert package["outcome"] == "failed"
    assert package["replaced"] == f"lf_manylinux-1.0-py3-none-manylinux_2_28_{HOST_ARCH}.whl"
    assert package["reason"].startswith(
        f"no wheel of lf-manylinux 1.0 for CPython {PYTHON_XY} on {HOST_ARCH}"
    )
    assert f"manylinux_2_17_{HOST_ARCH}" in package["reason"]


def test_hashes_check_the_resolvers_and_the_retargeted_downloads(package_index, tmp_path):
    pinned = [f"lf-manylinux==1.0 {' '.join('--hash=' + h for h in package_index.hashes('lf-manylinux'))}"]
    pinned.append(f"lf-puresdist==1.0 --hash={package_index.hashes('lf-puresdist')[0]}")
    made = deps_cli(package_index, requirements(tmp_path, *pinned), tmp_path / "out", "--arch", OTHER_ARCH)
    assert made.returncode == 0, made.stdout + made.stderr

    # Only this machine's wheel hashed: the other arch's wheel does not match.
    host_only = [h for h in package_index.hashes("lf-manylinux") if h[7:] == package_index.sha256[
        f"lf_manylinux-1.0-py3-none-manylinux_2_28_{HOST_ARCH}.whl"]]  # fmt: skip
    lines = [f"lf-manylinux==1.0 --hash={host_only[0]}"]
    refused = deps_cli(package_index, requirements(tmp_path, *lines), tmp_path / "out2", "--arch", OTHER_ARCH)
    assert refused.returncode == 2
    assert refused.stderr.strip().startswith(
        "buildfarm lambda: error: requirements: hash mismatch for lf-manylinux"
    )
    assert not (tmp_path / "out2").exists()
