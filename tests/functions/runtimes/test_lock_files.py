"""The three ways to give a runtime's requirements (requirements.txt with hashes, uv.lock,
pylock.toml), installed with the real uv in hash-checking mode into a venv of this Python
(from PyPI the first time, then the cache): what the runtime build's install step does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from buildfarm.errors import UsageError
from buildfarm.runtimes.build import Tree, install_requirements, requirements_file
from buildfarm.runtimes.definitions import load_definition
from buildfarm.runtimes.runtime_build import find_uv
from buildfarm.runtimes.selftest import installed_distributions, top_level_modules

PIN = "idna==3.10"
PYPROJECT = (
    '[project]\nname = "svc"\nversion = "1"\nrequires-python = ">=3.11"\ndependencies = ["idna==3.10"]\n'
)


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
    assert installed_distributions(tree.site_packages(series)) == [{"name": "idna", "version": "3.10"}]
    assert top_level_modules(tree.site_packages(series)) == ["idna"]


def test_a_dependency_missing_from_the_lock_is_named(tmp_path: Path, cache: Path) -> None:
    tree = Tree(tmp_path / "venv", "/opt/runtimes/svc/1")
    uv("venv", "--no-config", "--quiet", "--python", sys.executable, tree.path)
    lock = tmp_path / "requirements.txt"
    # requests needs charset-normalizer, idna, urllib3 and certifi, none of them in this lock
    lock.write_text(
        "requests==2.32.3 --hash=sha256:70761cfe03c773ceb22aa2f671b4757976145175cdfca038c02654d061d6dcc6\n"
    )
    with pytest.raises(
        UsageError, match=r"^the lock has no hash for \S+ \(a dependency missing from the lock\?\)$"
    ):
        install_requirements(find_uv(), tree, lock, cache, "requirements.txt")
