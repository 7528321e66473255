"""Where a runtime build may run (runtime_build.placement_problem): in its platform's builder
image or on a machine of its platform and arch, else one line naming both, exit 2, nothing
written; and `--runner docker`'s container (runtimes/docker_job.py): the cloud item's argv, the
store, definitions and cache mounted at their own paths, values only in the docker client's
environment. Fast: pure functions and refusals before any build (the real container is
tests/builder/test_docker_runtime_cli.py)."""

from __future__ import annotations

import io
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from buildfarm.cli import main
from buildfarm.errors import UsageError
from buildfarm.layout import VERSIONS_KEY
from buildfarm.runners import host
from buildfarm.runners.host import host_arch
from buildfarm.runtimes.cloud_items import runtime_command
from buildfarm.runtimes.definitions import load_definition
from buildfarm.runtimes.docker_job import docker_argv, docker_job, job_command, run_docker_job
from buildfarm.runtimes.runtime_build import RuntimeRequest, check_placement, placement_problem
from buildfarm.store import LocalStore, S3Store

HASH = "--hash=sha256:" + "ab" * 32
TOML = """name = "svc"
version = "2.1.0"
python = "3.13"
requirements = "svc/requirements.txt"
prefix = "/opt/runtimes/svc/2.1.0"
platforms = ["debian-11", "debian-12"]
arches = ["x86_64", "aarch64"]
"""
ANYWHERE = "runtime build for debian-11/x86_64 must run on"
DOCKER = ": use --runner docker"
IMAGE = "this is the builder image of"
BOTH = "debian-11/x86_64 (this machine is debian-12/aarch64)"


@pytest.mark.parametrize(
    ("image", "machine", "arch", "problem"),
    [
        (None, "debian-11", "x86_64", None),  # a bullseye machine
        ("debian-11", "debian-12", "x86_64", None),  # bullseye's image (its os-release unread)
        (None, "debian-12", "x86_64", f"{ANYWHERE} debian-11 (this machine is debian-12){DOCKER}"),
        (None, None, "x86_64", f"{ANYWHERE} debian-11 (this machine is not a registered platform){DOCKER}"),
        (None, "debian-11", "aarch64", f"{ANYWHERE} x86_64 (this machine is aarch64){DOCKER}"),
        (None, "debian-12", "aarch64", f"{ANYWHERE} {BOTH}{DOCKER}"),
        ("rhel-9", "debian-11", "x86_64", f"{ANYWHERE} debian-11 ({IMAGE} rhel-9, on x86_64)"),
        ("debian-11", None, "aarch64", f"{ANYWHERE} x86_64 ({IMAGE} debian-11, on aarch64)"),
    ],
)
def test_a_runtime_builds_only_where_its_platform_and_arch_are_what_they_claim(image, machine, arch, problem):
    found = placement_problem(
        "debian-11", "x86_64", image_platform=image, host_platform=machine, machine_arch=arch
    )
    assert found == problem


def test_the_builder_images_platform_is_trusted_over_this_machines(monkeypatch) -> None:
    monkeypatch.setattr(host, "host_platform_id", lambda registry: "debian-12")
    check_placement("debian-11", host_arch(), {"BUILDFARM_PLATFORM": "debian-11"})
    with pytest.raises(UsageError, match=r"on debian-11 \(this machine is debian-12\): use --runner docker"):
        check_placement("debian-11", host_arch(), {})
    with pytest.raises(UsageError, match="this is the builder image of debian-12, on"):
        check_placement("debian-11", host_arch(), {"BUILDFARM_PLATFORM": "debian-12"})


def write_definitions(directory: Path) -> Path:
    (directory / "svc").mkdir(parents=True)
    (directory / "svc" / "requirements.txt").write_text(f"six==1.17.0 {HASH}\n")
    (directory / "svc.toml").write_text(TOML)
    return directory


def store_with_python(root: Path, platform: str) -> LocalStore:
    """A store whose versions.json names a 3.13.5 build of platform (its tarball is never read)."""
    store = LocalStore(root)
    store.create()
    key = f"builds/3.13.5/{platform}/{host_arch()}/1/p.tar.gz"  # a file of the build's own directory
    entry = {"build": 1, "artifacts": [{"type": "tarball", "key": key, "sha256": "ab" * 32, "size": 1}]}
    builds = {"3.13.5": {platform: {host_arch(): entry}}}
    store.put_json(VERSIONS_KEY, {"schema_version": 1, "python_versions": ["3.13.5"], "builds": builds})
    return store


def files(root: Path) -> list[str]:
    return sorted(str(path.relative_to(root)) for path in root.rglob("*"))


def test_the_command_line_refuses_another_platform_here_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(host, "host_platform_id", lambda registry: "debian-12")
    monkeypatch.delenv("BUILDFARM_PLATFORM", raising=False)
    store = store_with_python(tmp_path / "store", "debian-11")
    definitions = write_definitions(tmp_path / "defs")
    before = files(tmp_path)
    argv = ["runtime", "build", "svc", "--platform", "debian-11", "--arch", host_arch(),
            "--store", str(store.root), "--definitions", str(definitions)]  # fmt: skip
    for runner in ([], ["--runner", "host"]):
        assert main([*argv, *runner]) == 2
        assert capsys.readouterr().err.strip().splitlines() == [
            f"buildfarm runtime: error: runtime build for debian-11/{host_arch()} must run on debian-11 "
            "(this machine is debian-12): use --runner docker"
        ]
    assert files(tmp_path) == before  # no cache, no runtimes/


def test_runner_docker_refuses_a_cell_the_definition_lacks_before_any_docker(tmp_path, capsys):
    store = store_with_python(tmp_path / "store", "debian-11")
    definitions = write_definitions(tmp_path / "defs")
    argv = ["runtime", "build", "svc", "--platform", "ubuntu-2404", "--runner", "docker",
            "--store", str(store.root), "--definitions", str(definitions)]  # fmt: skip
    assert main(argv) == 2
    assert "not defined for ubuntu-2404/x86_64" in capsys.readouterr().err
    assert not (tmp_path / "store" / "runtimes").exists()


def request(tmp_path: Path, store, **changes) -> RuntimeRequest:
    definitions = write_definitions(tmp_path / "defs")
    values = {
        "definition": load_definition(definitions / "svc.toml"), "version": "2.1.0",
        "platform": "debian-11", "arch": "x86_64", "store": store, "cache": tmp_path / "uv-cache",
    }  # fmt: skip
    return RuntimeRequest(**{**values, **changes})


def test_the_containers_command_is_the_cloud_items(tmp_path) -> None:
    store = LocalStore(tmp_path / "store")
    claimed = SimpleNamespace(item=SimpleNamespace(cell=("svc", "2.1.0", "debian-11", "x86_64")), build=7)
    farm_job = request(tmp_path, store, build=7, execution_id="exec-1")
    assert job_command(farm_job) == runtime_command(claimed, store, "exec-1")
    other = tmp_path / "other"
    other.mkdir()
    tarball = tmp_path / "python.tar.gz"
    without_build = job_command(request(other, store, python_tarball=tarball))
    assert "--build" not in without_build
    assert without_build[-4:] == ["--store", str(store.root), "--python-tarball", str(tarball)]


def test_a_directory_store_is_mounted_read_only_but_for_what_the_job_writes(tmp_path) -> None:
    """Each at its own path; the store read-only, so a runtime's build (its requirements' build
    scripts among it) cannot touch the store's other builds, catalogs or claims."""
    store = LocalStore(tmp_path / "store")
    tarball = tmp_path / "python.tar.gz"
    job = docker_job(
        request(tmp_path, store, cache=store.root / "runtimes/.cache/uv", python_tarball=tarball),
        tmp_path / "defs", {"AWS_SECRET_ACCESS_KEY": "s3cret", "UV_INDEX_URL": "https://mirror.test/simple"},
    )  # fmt: skip
    assert job.env == {
        "BUILDFARM_RUNTIMES": str(tmp_path / "defs"),
        "BUILDFARM_RUNTIME_CACHE": str(store.root / "runtimes/.cache/uv"),
        "UV_INDEX_URL": "https://mirror.test/simple",  # a directory store: no AWS credentials
    }
    argv = docker_argv(job, "buildfarm-builder:debian-11-x86_64-abc", "x86_64", "host")
    cell = store.root / "runtimes/svc/2.1.0/debian-11/x86_64"
    assert argv == [
        "docker", "run", "--rm", "--network", "host", "--platform", "linux/amd64",
        "-e", "BUILDFARM_RUNTIMES", "-e", "BUILDFARM_RUNTIME_CACHE", "-e", "UV_INDEX_URL",
        "--mount", f"type=bind,source={tmp_path}/defs,target={tmp_path}/defs,readonly",
        "--mount", f"type=bind,source={store.root},target={store.root},readonly",
        # Read-write in it only what the job writes: the create-only writes' locks, the cell
        # (the job numbers the build), the cache (on top of the read-only store).
        "--mount", f"type=bind,source={store.root}/.locks,target={store.root}/.locks",
        "--mount", f"type=bind,source={cell},target={cell}",
        "--mount", f"type=bind,source={store.root}/runtimes/.cache/uv,target={store.root}/runtimes/.cache/uv",
        "--mount", f"type=bind,source={tarball},target={tarball},readonly",
        "buildfarm-builder:debian-11-x86_64-abc", *job.command,
    ]  # fmt: skip
    # A claimed build number: only that build's directory.
    other = tmp_path / "other"
    other.mkdir()
    claimed = docker_job(request(other, store, build=7), other / "defs", {})
    writable = [m.source for m in claimed.mounts if not m.read_only]
    assert writable == [store.root / ".locks", cell / "7", other / "uv-cache"]


def test_an_s3_stores_credentials_travel_by_name_only(tmp_path) -> None:
    store = S3Store("farm-store", "python", client=object())
    outside = tmp_path / "locks" / "svc.txt"
    environ = {
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "s3cret",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:5000", "AWS_CA_BUNDLE": "/etc/ca.pem",
        "AWS_SHARED_CREDENTIALS_FILE": "/root/.aws/credentials", "HOME": "/root",
    }  # fmt: skip
    built = request(tmp_path, store, arch="aarch64")
    outside.parent.mkdir()
    outside.write_text(f"six==1.17.0 {HASH}\n")
    (tmp_path / "defs" / "svc.toml").write_text(TOML.replace("svc/requirements.txt", str(outside)))
    built = RuntimeRequest(
        **{**built.__dict__, "definition": load_definition(tmp_path / "defs" / "svc.toml")}
    )
    job = docker_job(built, tmp_path / "defs", environ)
    assert sorted(job.env) == [
        "AWS_ACCESS_KEY_ID", "AWS_ENDPOINT_URL", "AWS_SECRET_ACCESS_KEY",
        "BUILDFARM_RUNTIMES", "BUILDFARM_RUNTIME_CACHE",
    ]  # fmt: skip
    argv = docker_argv(job, "tag", "aarch64", "default")
    assert argv[argv.index("--platform") + 1] == "linux/arm64"
    assert not {"AKIDEXAMPLE", "s3cret", "http://127.0.0.1:5000"} & set(" ".join(argv).split())
    # A lock outside the definitions directory; the cache beside an S3 store.
    assert f"type=bind,source={outside},target={outside},readonly" in argv
    assert f"type=bind,source={tmp_path}/uv-cache,target={tmp_path}/uv-cache" in argv
    assert argv[argv.index("tag") + 1 :] == job.command
    assert job.command[-2:] == ["--store", "s3://farm-store/python"]


def test_paths_with_a_colon_or_a_comma_are_mounted_as_they_are(tmp_path) -> None:
    """-v splits at ':'; --mount's fields are CSV, so a comma is quoted and a ':' needs nothing
    (checked with a real engine: `--mount 'type=bind,"source=/tmp/a:b,c",target=/x,readonly'`)."""
    store = LocalStore(tmp_path / "a:b,c")
    argv = docker_argv(docker_job(request(tmp_path, store), tmp_path / "defs", {}), "tag", "x86_64", "host")
    assert f'type=bind,"source={store.root}","target={store.root}",readonly' in argv


def test_a_uv_lock_outside_the_definitions_is_mounted_with_its_pyproject(tmp_path) -> None:
    """uv export reads the pyproject.toml beside a uv.lock: the container needs both."""
    project = tmp_path / "app"
    project.mkdir()
    (project / "uv.lock").write_text("version = 1\n")
    (project / "pyproject.toml").write_text('[project]\nname = "app"\nversion = "1"\n')
    built = request(tmp_path, LocalStore(tmp_path / "store"))
    (tmp_path / "defs" / "svc.toml").write_text(
        TOML.replace("svc/requirements.txt", str(project / "uv.lock"))
    )
    built = RuntimeRequest(
        **{**built.__dict__, "definition": load_definition(tmp_path / "defs" / "svc.toml")}
    )
    argv = docker_argv(docker_job(built, tmp_path / "defs", {}), "tag", "x86_64", "host")
    for name in ("uv.lock", "pyproject.toml"):
        assert f"type=bind,source={project / name},target={project / name},readonly" in argv


def test_the_shared_uv_cache_setting_reaches_a_job_beside_s3_only(tmp_path) -> None:
    environ = {"BUILDFARM_RUNTIME_UV_CACHE": "true"}
    beside_s3 = docker_job(
        request(tmp_path, S3Store("farm-store", "python", client=object())), tmp_path / "defs", environ
    )
    assert beside_s3.env["BUILDFARM_RUNTIME_UV_CACHE"] == "true"
    other = tmp_path / "other"
    other.mkdir()
    local = docker_job(request(other, LocalStore(other / "store")), other / "defs", environ)
    assert "BUILDFARM_RUNTIME_UV_CACHE" not in local.env  # a directory store keeps its own cache


# Stands in for the docker client: an engine with every image; `run` records its argv and which
# of the job's read-write store directories existed, then fails as a failed job would.
FAKE_DOCKER = """#!/bin/sh
case "$1" in
  info|network) exit 0 ;;
  image) [ "$3" = "--format" ] && echo sha256:feedface; exit 0 ;;
  run)
    printf '%s\\n' "$@" > "$RECORD/argv"
    for dir in .locks runtimes/svc/2.1.0/debian-11/x86_64/7 runtimes/.cache/uv; do
      [ -d "$STORE/$dir" ] && echo "$dir" >> "$RECORD/existed"
    done
    exit 3 ;;
esac
exit 1
"""


def test_runner_docker_makes_what_it_mounts_and_removes_what_the_job_left_empty(tmp_path, monkeypatch):
    store = LocalStore(tmp_path / "store")
    store.create()
    (store.root / VERSIONS_KEY).write_text("{}")
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "docker").write_text(FAKE_DOCKER)
    (tmp_path / "bin" / "docker").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    monkeypatch.setenv("RECORD", str(tmp_path))
    monkeypatch.setenv("STORE", str(store.root))
    built = request(
        tmp_path, store, arch=host_arch(), build=7, python_tarball=tmp_path / "python.tar.gz",
        cache=store.root / "runtimes/.cache/uv",
    )  # fmt: skip
    assert run_docker_job(built, tmp_path / "defs", io.StringIO()) == 3
    existed = (tmp_path / "existed").read_text().split()
    assert existed == [".locks", f"runtimes/svc/2.1.0/debian-11/{host_arch()}/7", "runtimes/.cache/uv"]
    assert f"type=bind,source={store.root},target={store.root},readonly" in (tmp_path / "argv").read_text()
    assert [p.relative_to(store.root).as_posix() for p in store.root.rglob("*")] == [VERSIONS_KEY]
