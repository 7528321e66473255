"""The three ways to give a runtime's requirements (requirements.txt with hashes, uv.lock,
pylock.toml), installed with the real uv in hash-checking mode into a venv of this Python:
what the runtime build's install step does. The distributions come from a local package index
over loopback HTTP (uv's UV_DEFAULT_INDEX), so no test here needs the network or a TLS
certificate that is valid on the day it runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import sdist_backend
from package_index import PackageIndex, serve_package_index

from buildfarm.errors import UsageError
from buildfarm.runtimes.build import Tree, install_requirements, requirements_file
from buildfarm.runtimes.definitions import DefinitionError, load_definition
from buildfarm.runtimes.runtime_build import find_uv
from buildfarm.runtimes.selftest import installed_distributions, top_level_modules

PIN = "rt-leaf==1.0"
PYPROJECT = f'[project]\nname = "svc"\nversion = "1"\nrequires-python = ">=3.11"\ndependencies = ["{PIN}"]\n'


@pytest.fixture(scope="module")
def runtime_index(tmp_path_factory, http_dir_server) -> PackageIndex:
    """rt-leaf 1.0, and rt-app 1.0, which requires rt-leaf."""
    root = tmp_path_factory.mktemp("runtime-index")
    files = root / "files"
    files.mkdir()
    sdist_backend.write_wheel(str(files), "rt-leaf", "1.0", "py3-none-any", {"rt_leaf.py": b"LEAF = 1\n"})
    app = {"rt_app.py": b"import rt_leaf\n"}
    sdist_backend.write_wheel(str(files), "rt-app", "1.0", "py3-none-any", app, requires=("rt-leaf",))
    return serve_package_index(root, http_dir_server)


@pytest.fixture(autouse=True)
def local_index(runtime_index: PackageIndex, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every uv here (--no-config still reads the environment) resolves from the local index."""
    monkeypatch.setenv("UV_DEFAULT_INDEX", runtime_index.url)
    for name in ("UV_INDEX_URL", "UV_INDEX", "UV_EXTRA_INDEX_URL", "UV_OFFLINE"):
        monkeypatch.delenv(name, raising=False)


def uv(*args: str | Path, cwd: Path | None = None) -> None:
    subprocess.run([find_uv(), *map(str, args)], check=True, cwd=cwd, capture_output=True)


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("uv-cache")


def definition_with(tmp_path: Path, lock: str) -> Path:
    path = tmp_path / "svc.toml"
    path.write_text(
        'name = "svc"\nversion = "1"\npython = "3.13"\nprefix = "/opt/runtimes/svc/1"\n'
        f'requirements = "svc/{lock}"\nplatforms = ["debian-12"]\narches = ["x86_64"]\n'
    )
    return path


def make_lock(directory: Path, kind: str) -> None:
    directory.mkdir()
    (directory / "requirements.in").write_text(f"{PIN}\n")
    if kind == "uv.lock":
        (directory / "pyproject.toml").write_text(PYPROJECT)
        uv("lock", "--no-config", "--quiet", cwd=directory)
    else:
        out = "requirements.txt" if kind == "requirements.txt" else "pylock.toml"
        fmt = ["--format", "pylock.toml"] if kind == "pylock.toml" else []
        options = ["--no-config", "--quiet", "--generate-hashes", *fmt]
        uv("pip", "compile", *options, "requirements.in", "-o", out, cwd=directory)


@pytest.mark.parametrize("kind", ["requirements.txt", "uv.lock", "pylock.toml"])
def test_each_lock_kind_installs_with_hashes(tmp_path: Path, cache: Path, kind: str) -> None:
    make_lock(tmp_path / "svc", kind)
    definition = load_definition(definition_with(tmp_path, kind))
    assert definition.lock_kind == kind
    tree = Tree(tmp_path / "venv", "/opt/runtimes/svc/1")
    uv("venv", "--no-config", "--quiet", "--python", sys.executable, tree.path)
    work = tmp_path / "work"
    work.mkdir()
    requirements = requirements_file(find_uv(), definition, work)
    install_requirements(find_uv(), tree, requirements, cache, kind)
    series = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert installed_distributions(tree.site_packages(series)) == [{"name": "rt-leaf", "version": "1.0"}]
    assert top_level_modules(tree.site_packages(series)) == ["rt_leaf"]


def test_a_dependency_missing_from_the_lock_is_named(
    tmp_path: Path, cache: Path, runtime_index: PackageIndex
) -> None:
    tree = Tree(tmp_path / "venv", "/opt/runtimes/svc/1")
    uv("venv", "--no-config", "--quiet", "--python", sys.executable, tree.path)
    lock = tmp_path / "requirements.txt"
    # rt-app requires rt-leaf, which this lock leaves out
    (digest,) = runtime_index.hashes("rt-app")
    lock.write_text(f"rt-app==1.0 --hash={digest}\n")
    missing = r"^the lock has no hash for rt-leaf(==1\.0)? \(a dependency missing from the lock\?\)$"
    with pytest.raises(UsageError, match=missing):
        install_requirements(find_uv(), tree, lock, cache, "requirements.txt")


WITH_DEV = PYPROJECT + '\n[dependency-groups]\ndev = ["rt-app==1.0"]\n'


def locked_project(tmp_path: Path) -> Path:
    """svc/: a project depending on rt-leaf with rt-app in its dev group, locked by uv."""
    project = tmp_path / "svc"
    project.mkdir()
    (project / "pyproject.toml").write_text(WITH_DEV)
    uv("lock", "--no-config", "--quiet", cwd=project)
    return project


def test_a_uv_lock_installs_none_of_its_dependency_groups(tmp_path: Path, cache: Path) -> None:
    """uv export's default takes the dev group (and pyproject's default-groups): a runtime would
    ship development tools. It installs the project's dependencies only."""
    locked_project(tmp_path)
    definition = load_definition(definition_with(tmp_path, "uv.lock"))
    work = tmp_path / "work"
    work.mkdir()
    requirements = requirements_file(find_uv(), definition, work)
    assert "rt-leaf==1.0" in requirements.read_text() and "rt-app" not in requirements.read_text()
    tree = Tree(tmp_path / "venv", "/opt/runtimes/svc/1")
    uv("venv", "--no-config", "--quiet", "--python", sys.executable, tree.path)
    install_requirements(find_uv(), tree, requirements, cache, "uv.lock")
    series = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert installed_distributions(tree.site_packages(series)) == [{"name": "rt-leaf", "version": "1.0"}]


def test_a_uv_locks_digest_covers_its_pyproject(tmp_path: Path) -> None:
    """uv export reads pyproject.toml too: the same uv.lock under another pyproject is another
    install, so another digest (a new build is planned)."""
    project = locked_project(tmp_path)
    lock = (project / "uv.lock").read_bytes()
    definition = load_definition(definition_with(tmp_path, "uv.lock"))
    before = definition.lock_sha256()
    (project / "pyproject.toml").write_text(WITH_DEV + '\n[tool.uv]\ndefault-groups = ["dev"]\n')
    assert (project / "uv.lock").read_bytes() == lock
    assert definition.lock_sha256() != before and len(before) == 64
    assert definition.lock_inputs() == [(project / name).resolve() for name in ("uv.lock", "pyproject.toml")]
    (project / "pyproject.toml").unlink()
    with pytest.raises(DefinitionError, match=r"requirements 'svc/uv\.lock': no pyproject\.toml beside it"):
        load_definition(definition_with(tmp_path, "uv.lock"))
