"""A runtime's version and where it is installed: the prefix follows the resolved version (the
TOML's, --runtime-version or the git tag), a git tag is lowercased, and a Python tarball that is
no release or another cell's is one line (exit 2) before anything is built or written. Real git,
real tar, the real command line; no network, no root."""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

import pytest

from buildfarm.cli import build_parser, main
from buildfarm.cli.runtime_cmds import runtime_request
from buildfarm.errors import UsageError
from buildfarm.runners.host import host_arch
from buildfarm.runtimes.definitions import DefinitionError, load_definition
from buildfarm.runtimes.farm_cells import plan_runtime_cells
from buildfarm.runtimes.python_source import matches, tarball_cell_problem
from buildfarm.store import LocalStore

HASH = "--hash=sha256:" + "ab" * 32


def write_svc(directory: Path, version: str, prefix: str, arch: str = "x86_64") -> Path:
    (directory / "svc").mkdir(parents=True)
    (directory / "svc" / "requirements.txt").write_text(f"six==1.17.0 {HASH}\n")
    (directory / "svc.toml").write_text(
        f'name = "svc"\nversion = "{version}"\npython = "3.13"\nrequirements = "svc/requirements.txt"\n'
        f'prefix = "{prefix}"\nplatforms = ["debian-12"]\narches = ["{arch}"]\n'
    )
    return directory


def build_args(tmp_path: Path, definitions: Path | None, *extra: str) -> list[str]:
    store = tmp_path / "store"
    store.mkdir(exist_ok=True)
    where = ["--definitions", str(definitions)] if definitions else []
    return ["runtime", "build", *extra, "--platform", "debian-12", "--store", str(store), *where,
            "--cache", str(tmp_path / "cache")]  # fmt: skip


def request_for(tmp_path: Path, definitions: Path | None, name: str, *options: str):
    return runtime_request(build_parser().parse_args(build_args(tmp_path, definitions, name, *options)))


def test_the_prefix_follows_the_runtime_version(tmp_path: Path) -> None:
    """--runtime-version 2.0.0 of the example installs at .../2.0.0, not at 1.0.0's prefix (two
    package versions owning the same files: dpkg and rpm refuse the second)."""
    example = request_for(tmp_path, None, "fastapi-demo", "--runtime-version", "2.0.0")
    assert (example.version, example.definition.prefix) == ("2.0.0", "/opt/runtimes/fastapi-demo/2.0.0")
    assert request_for(tmp_path, None, "fastapi-demo").definition.prefix == "/opt/runtimes/fastapi-demo/1.0.0"
    templated = write_svc(tmp_path / "templated", "2.1.0", "/opt/acme/{name}-{version}")
    assert request_for(tmp_path, templated, "svc").definition.prefix == "/opt/acme/svc-2.1.0"


def test_a_prefix_spelled_out_serves_its_own_version_only(tmp_path: Path, capsys) -> None:
    literal = write_svc(tmp_path / "literal", "2.1.0", "/opt/runtimes/svc/2.1.0")
    assert request_for(tmp_path, literal, "svc").definition.prefix == "/opt/runtimes/svc/2.1.0"
    assert main(build_args(tmp_path, literal, "svc", "--runtime-version", "2.0.0")) == 2
    assert capsys.readouterr().err.strip() == (
        "buildfarm runtime: error: runtime 'svc': prefix '/opt/runtimes/svc/2.1.0' is version "
        "2.1.0's; write {version} in it to build 2.0.0"
    )


def git(directory: Path, *args: str) -> None:
    identity = ["-c", "user.name=farm", "-c", "user.email=farm@example.org"]
    subprocess.run(["git", "-C", str(directory), *identity, *args], check=True, capture_output=True)


@pytest.fixture
def tagged(tmp_path: Path) -> Path:
    """A definitions checkout (version = "git-tag") at a commit tagged V2.0."""
    definitions = write_svc(tmp_path / "defs", "git-tag", "/opt/runtimes/{name}/{version}")
    git(definitions, "init", "--quiet")
    git(definitions, "add", ".")
    git(definitions, "commit", "--quiet", "-m", "svc")
    git(definitions, "tag", "V2.0")
    return definitions


def test_a_git_tag_is_the_lowercased_version_and_names_the_prefix(tmp_path: Path, tagged: Path) -> None:
    """V2.0 and v2.0 are one version (PEP 440 and Debian compare without case) and a runtime
    version is lowercase (a store key, a package name): the tag is lowercased, not refused."""
    assert load_definition(tagged / "svc.toml").resolved_version() == "v2.0"
    request = request_for(tmp_path, tagged, "svc")
    assert (request.version, request.definition.prefix) == ("v2.0", "/opt/runtimes/svc/v2.0")
    planned = plan_runtime_cells(LocalStore(tmp_path / "store"), [load_definition(tagged / "svc.toml")],
                                 {("debian-12", "x86_64")})  # fmt: skip
    assert planned.definitions["svc"].prefix == "/opt/runtimes/svc/v2.0" and not planned.unresolved


def test_a_git_tag_needs_git_and_a_checkout(tmp_path: Path, tagged: Path, monkeypatch) -> None:
    (tmp_path / "bin").mkdir()
    outside = write_svc(tmp_path / "copy", "git-tag", "/opt/runtimes/{name}/{version}")
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    unversioned = r"copy is not in a git checkout \(.*\); pass --runtime-version$"
    with pytest.raises(DefinitionError, match=unversioned):
        load_definition(outside / "svc.toml").resolved_version()
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    with pytest.raises(DefinitionError, match="version = 'git-tag' needs git, which cannot run here"):
        load_definition(tagged / "svc.toml").resolved_version()


def test_a_python_that_is_no_release_is_one_error() -> None:
    with pytest.raises(UsageError, match=r"^the Python tarball is '3\.14\.0a1\+', not a release"):
        matches("3.13", "3.14.0a1+")
    assert matches("3.14", "3.14.0a1") and not matches("3.13", "3.14.0") and matches("3.13.5", "3.13.5")


def dev_build_tarball(path: Path) -> Path:
    """A Python tarball whose python3 says what a development build's platform.python_version()
    says (3.14.0a1+)."""
    script = b"#!/bin/sh\necho 3.14.0a1+\n"
    with tarfile.open(path, "w:gz") as tar:
        for name in ("python", "python/bin"):
            tar.addfile(_directory(name))
        member = tarfile.TarInfo("python/bin/python3")
        member.size, member.mode = len(script), 0o755
        tar.addfile(member, io.BytesIO(script))
    return path


def _directory(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, 0o755
    return info


def test_a_development_build_tarball_is_one_line_not_a_traceback(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("BUILDFARM_PLATFORM", "debian-12")  # this test is debian-12's builder image
    arch = host_arch()
    definitions = write_svc(tmp_path / "defs", "2.1.0", "/opt/runtimes/{name}/{version}", arch)
    tarball = dev_build_tarball(tmp_path / f"python-3.14.0a1+-debian-12-{arch}.tar.gz")
    argv = build_args(tmp_path, definitions, "svc", "--arch", arch, "--python-tarball", str(tarball))
    assert main(argv) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "buildfarm runtime: error: the Python tarball is '3.14.0a1+', not a release (a development "
        "build?): a runtime needs a released Python 3.13"
    ]
    assert not (tmp_path / "store" / "runtimes").exists()


def test_a_python_tarball_named_for_another_cell_is_refused(tmp_path: Path, capsys) -> None:
    definitions = write_svc(tmp_path / "defs", "2.1.0", "/opt/runtimes/{name}/{version}")
    tarball = dev_build_tarball(tmp_path / "python-3.13.5-rhel-9-aarch64.tar.gz")
    assert main(build_args(tmp_path, definitions, "svc", "--python-tarball", str(tarball))) == 2
    assert capsys.readouterr().err.strip() == (
        "buildfarm runtime: error: --python-tarball python-3.13.5-rhel-9-aarch64.tar.gz is a Python "
        "build for rhel-9/aarch64, not debian-12/x86_64"
    )
    same = Path("python-3.13.5-debian-12-x86_64.tar.gz")
    assert tarball_cell_problem(same, "debian-12", "x86_64") is None
    assert tarball_cell_problem(Path("my-python.tar.gz"), "debian-12", "x86_64") is None  # cannot tell
