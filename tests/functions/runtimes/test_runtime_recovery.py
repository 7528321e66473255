"""Recovery of runtime cells: a run whose execution ended before Finalize (stopped, timed out,
Finalize failed) has its runtime items decided by the next plan's recover(): a build whose job
wrote its manifest but whose PublishRuntime never ran is verified and published, signed; one
with nothing built fails and its claim is released; the run is closed. A directory store and
moto S3 (the cloud's store)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from functions.conftest import NOW, read_json, write_published_matrix, write_releases
from runtime_definitions import LOCKED_HASH, SVC_TOML, write_svc_definitions

from buildfarm.attest.signing import KeyFileSigner, init_key
from buildfarm.catalog.versions_json import runtime_cells
from buildfarm.layout import VERSIONS_KEY
from buildfarm.plan import plan
from buildfarm.recovery import recover
from buildfarm.runtimes.cloud_items import decide_runtime_item, read_runtime_items
from buildfarm.runtimes.definitions import RuntimeDefinition, load_definition
from buildfarm.runtimes.keys import runtime_artifact_dir, runtime_claim_key
from buildfarm.store import Store

DEBIAN = ("svc", "2.1.0", "debian-12", "x86_64")
RHEL = ("svc", "2.1.0", "rhel-9", "x86_64")
# 3.13.5 is published on debian-12 and rhel-9 x86_64; the aarch64 Python cells are planned.
REQUEST = {"versions": ["3.13.5"], "platforms": ["debian-12", "rhel-9"], "arches": ["x86_64", "aarch64"]}


@pytest.fixture(params=["local", "s3"])
def store(request) -> Store:
    return request.getfixturevalue("local_store" if request.param == "local" else "s3_store")


@pytest.fixture
def svc(tmp_path: Path) -> RuntimeDefinition:
    directory = write_svc_definitions(tmp_path / "defs", "idna==3.10")
    (directory / "svc.toml").write_text(SVC_TOML.replace('["debian-12"]', '["debian-12", "rhel-9"]'))
    return load_definition(directory / "svc.toml")


@pytest.fixture
def signer(tmp_path: Path) -> KeyFileSigner:
    init_key(tmp_path / "farm.pem")
    return KeyFileSigner(tmp_path / "farm.pem")


SVC_LOCK = hashlib.sha256(f"idna==3.10 {LOCKED_HASH}\n".encode()).hexdigest()  # svc's, as planned


def put_runtime_build(
    store: Store, cell: tuple[str, str, str, str], build: int, execution_id: str = "exec-1"
) -> None:
    """What `buildfarm runtime build --build N --execution-id ID` leaves: its artifact, then
    manifest.json."""
    directory = runtime_artifact_dir(*cell, build)
    tarball = b"a runtime tarball"
    store.put(f"{directory}/runtime-svc.tar.gz", tarball)
    store.put_json(
        f"{directory}/manifest.json",
        {
            "runtime": {"name": "svc", "version": "2.1.0", "prefix": "/opt/runtimes/svc/2.1.0"},
            "platform": cell[2], "arch": cell[3], "build": build, "execution_id": execution_id,
            "python": {"version": "3.13.5", "build": 1, "tarball": "builds/...", "sha256": "ef" * 32},
            "requirements": {"kind": "requirements.txt", "file": "svc/requirements.txt", "sha256": SVC_LOCK},
            "artifacts": [{"type": "tarball", "file": "runtime-svc.tar.gz",
                           "sha256": hashlib.sha256(tarball).hexdigest(), "size": len(tarball)}],
        },
    )  # fmt: skip


def planned(store: Store, config, svc: RuntimeDefinition, request: dict, execution: str) -> dict:
    write_releases(store, ["3.13.5"])
    write_published_matrix(store, ["3.13.5"], ["debian-12", "rhel-9"], ["x86_64"])
    return plan(request, store, config, execution, NOW, runtimes=[svc]).summary


def test_an_ended_runs_built_runtime_is_published_and_the_rest_failed(store, config, svc, signer) -> None:
    summary = planned(store, config, svc, REQUEST, "exec-1")
    assert summary["counts"]["planned"] == 2 and summary["runtimes"]["planned"] == 2
    put_runtime_build(store, DEBIAN, 1)  # its job finished; the execution was stopped before PublishRuntime
    still = recover(store, config, NOW, is_running=lambda execution: True, signer=signer)
    assert still.running == ["exec-1"] and not runtime_cells(read_json(store, VERSIONS_KEY))

    recovery = recover(store, config, NOW, is_running=lambda execution: False, signer=signer)
    assert recovery.finalized == ["exec-1"]
    assert recovery.published == ["svc/2.1.0/debian-12/x86_64"]
    assert sorted(recovery.failed) == [
        "3.13.5/debian-12/aarch64", "3.13.5/rhel-9/aarch64", "svc/2.1.0/rhel-9/x86_64"
    ]  # fmt: skip
    assert runtime_cells(read_json(store, VERSIONS_KEY))[DEBIAN].build == 1
    directory = runtime_artifact_dir(*DEBIAN, 1)
    assert store.exists(f"{directory}/SHA256SUMS") and store.exists(f"{directory}/SHA256SUMS.sig")
    assert read_json(store, runtime_claim_key(*RHEL))["released"] is True
    assert read_json(store, runtime_claim_key(*DEBIAN))["released"] is True
    assert not store.exists("runs/exec-1.json")
    # Done once: the next recovery has no open run.
    assert recover(store, config, NOW, is_running=lambda execution: False, signer=signer).finalized == []


def test_a_run_of_runtimes_only_is_recovered_and_closed(store, config, svc, signer) -> None:
    request = {**REQUEST, "arches": ["x86_64"]}  # every Python cell published: runtimes only
    summary = planned(store, config, svc, request, "exec-1")
    assert summary["counts"]["planned"] == 0 and summary["runtimes"]["planned"] == 2
    debian, rhel = read_runtime_items(store, summary["runtimes"]["items"])
    put_runtime_build(store, DEBIAN, 1)
    put_runtime_build(store, RHEL, 1)
    # PublishRuntime decided rhel-9's item, which failed; then the execution was stopped.
    decide_runtime_item(store, rhel, NOW, "build job failed: exit 2", signer=signer)
    recovery = recover(store, config, NOW, is_running=lambda execution: False, signer=signer)
    assert (recovery.published, recovery.failed) == ([debian.cell], [rhel.cell])  # the decision kept
    assert list(runtime_cells(read_json(store, VERSIONS_KEY))) == [DEBIAN]
    assert "svc" in store.read("index.html")[0].decode()  # derived files list the runtime
    assert not store.exists("runs/exec-1.json")


def test_a_partial_runtime_build_is_failed_not_published(store, config, svc, signer) -> None:
    summary = planned(store, config, svc, {**REQUEST, "arches": ["x86_64"]}, "exec-1")
    assert summary["runtimes"]["planned"] == 2
    put_runtime_build(store, DEBIAN, 1)
    store.delete(f"{runtime_artifact_dir(*DEBIAN, 1)}/runtime-svc.tar.gz")  # a job killed mid-upload
    recovery = recover(store, config, NOW, is_running=lambda execution: False, signer=signer)
    assert recovery.published == [] and len(recovery.failed) == 2
    assert not runtime_cells(read_json(store, VERSIONS_KEY))
    assert not store.exists("runs/exec-1.json")
