"""A Spot retry of `buildfarm runtime build --build N` (Batch retries the job after a Spot
reclaim; the argv is the one the job runs): an earlier attempt that completed is kept and
nothing is rebuilt; a partial one (files, no manifest.json) fails at once with one line naming
what is there, writing nothing; a manifest.json of another build is refused. Fast: no build
runs (each case decides before uv or Python are needed), a directory store and moto S3."""

from __future__ import annotations

from pathlib import Path

import pytest
from runtime_definitions import write_svc_definitions

from buildfarm.cli import main
from buildfarm.runtimes.keys import runtime_artifact_dir
from buildfarm.store import Store

CELL = ("svc", "2.1.0", "debian-12", "x86_64")
DIRECTORY = runtime_artifact_dir(*CELL, 7)


@pytest.fixture(params=["local", "s3"])
def store(request) -> Store:
    return request.getfixturevalue("local_store" if request.param == "local" else "s3_store")


@pytest.fixture
def definitions(tmp_path: Path) -> Path:
    return write_svc_definitions(tmp_path / "defs", "idna==3.10")


def job(definitions: Path, store: Store) -> list[str]:
    return [
        "runtime", "build", "svc", "--platform", "debian-12", "--arch", "x86_64",
        "--runtime-version", "2.1.0", "--build", "7", "--execution-id", "exec-7", "--store", store.location,
        "--definitions", str(definitions),
    ]  # fmt: skip


def manifest(build: int = 7) -> dict:
    return {
        "runtime": {"name": "svc", "version": "2.1.0", "prefix": "/opt/runtimes/svc/2.1.0"},
        "platform": "debian-12", "arch": "x86_64", "build": build, "execution_id": "exec-7",
        "python": {"version": "3.13.5", "build": 1},
        "packages": [{"name": "idna", "version": "3.10"}],
        "selftest": {"moved": {"status": "passed"}},
    }  # fmt: skip


def keys(store: Store) -> dict[str, bytes]:
    return {info.key: store.read(info.key)[0] for info in store.list("")}


def test_a_complete_earlier_attempt_is_kept_and_nothing_is_rebuilt(store, definitions, capsys) -> None:
    store.put(f"{DIRECTORY}/svc-2.1.0-debian-12-x86_64-7.tar.gz", b"the first attempt's tarball")
    store.put_json(f"{DIRECTORY}/manifest.json", manifest())
    before = keys(store)
    assert main(job(definitions, store)) == 0
    out = capsys.readouterr().out
    assert "svc 2.1.0 (debian-12/x86_64) build 7: Python 3.13.5; idna 3.10" in out
    assert f"stored {store.url(DIRECTORY)}/\n" in out  # a farm job's build: the farm publishes it
    assert keys(store) == before  # kept as it was: PublishRuntime verifies it


def test_a_partial_earlier_attempt_fails_at_once_naming_its_files(store, definitions, capsys) -> None:
    store.put(f"{DIRECTORY}/svc-2.1.0-debian-12-x86_64-7.tar.gz", b"half a tarball")
    before = keys(store)
    assert main(job(definitions, store)) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].endswith(
        f"{store.url(DIRECTORY)}/ holds a partial upload of an earlier attempt "
        "(svc-2.1.0-debian-12-x86_64-7.tar.gz; no manifest.json) and builds are never overwritten: "
        "build 7 fails, the next run builds the next number"
    )
    assert keys(store) == before


@pytest.mark.parametrize(
    "other",
    [
        manifest(build=6),
        {**manifest(), "arch": "aarch64"},
        {**manifest(), "execution_id": "another-execution"},  # planted, or another run's
        ["not", "a", "manifest"],
        "not json",
    ],
)
def test_a_manifest_that_is_not_this_builds_is_refused(store, definitions, capsys, other) -> None:
    if other == "not json":
        store.put(f"{DIRECTORY}/manifest.json", b"{half")
    else:
        store.put_json(f"{DIRECTORY}/manifest.json", other)
    before = keys(store)
    assert main(job(definitions, store)) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{store.url(DIRECTORY)}/manifest.json" in err[0], err
    assert keys(store) == before


def test_an_empty_build_number_builds(store, definitions, capsys) -> None:
    """No earlier attempt: the build goes on (here to the Python it needs, not published)."""
    assert main(job(definitions, store)) == 2
    err = capsys.readouterr().err
    assert "earlier attempt" not in err and "Python" in err, err
