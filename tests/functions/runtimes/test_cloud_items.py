"""Runtime cells in the cloud workflow: the Batch job's `buildfarm runtime build ... --build N`
builds the number the planner claimed (the command line parsed as the job would run it); Plan
writes the runtime items beside the Python items (whose shape stays); PublishRuntime and
Finalize decide them (publish_runtime), Finalize the ones PublishRuntime did not. Fast: no
build runs, a directory store."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from functions.conftest import NOW, read_json, write_published_matrix, write_releases
from runtime_definitions import SVC_TOML, write_svc_definitions

from buildfarm.attest.signing import KeyFileSigner, init_key
from buildfarm.catalog.versions_json import runtime_cells
from buildfarm.cli import build_parser, main
from buildfarm.cli.runtime_cmds import runtime_request
from buildfarm.layout import VERSIONS_KEY
from buildfarm.plan import plan
from buildfarm.runtimes.cloud_items import decide_runtime_item, finalize_runtime_items, read_runtime_items
from buildfarm.runtimes.definitions import RuntimeDefinition, load_definition
from buildfarm.runtimes.keys import runtime_artifact_dir, runtime_claim_key
from buildfarm.store import LocalStore


@pytest.fixture
def definitions(tmp_path: Path) -> Path:
    return write_svc_definitions(tmp_path / "defs", "idna==3.10")


def job_argv(definitions: Path, store: Path, build: str) -> list[str]:
    return [
        "runtime", "build", "svc", "--platform", "debian-12", "--arch", "x86_64",
        "--runtime-version", "2.1.0", "--build", build, "--store", str(store),
        "--definitions", str(definitions),
    ]  # fmt: skip


def test_the_claimed_build_number_is_the_one_requested(definitions: Path, tmp_path: Path) -> None:
    args = build_parser().parse_args(job_argv(definitions, tmp_path / "store", "7"))
    request = runtime_request(args)
    assert (request.build, request.version, request.platform, request.arch) == (
        7,
        "2.1.0",
        "debian-12",
        "x86_64",
    )
    argv = job_argv(definitions, tmp_path / "store", "7")
    del argv[argv.index("--build") : argv.index("--build") + 2]
    without = build_parser().parse_args(argv)
    assert runtime_request(without).build is None  # a local build takes the next free number


@pytest.mark.parametrize("bad", ["0", "07", "-1", "x", "1234567890"])
def test_a_bad_build_number_is_one_line_and_builds_nothing(
    bad: str, definitions: Path, tmp_path: Path, capsys
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(job_argv(definitions, tmp_path / "store", bad))
    assert exit_.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.endswith(f"argument --build: invalid build number {bad!r} (1 to 999999999, no leading zeros)")
    assert not (tmp_path / "store").exists()


# -- Plan writes the runtime items; PublishRuntime and Finalize decide them --------------------

CELL = ("svc", "2.1.0", "debian-12", "x86_64")
REQUEST = {"versions": ["3.13.5"], "platforms": ["debian-12", "rhel-9"], "arches": ["x86_64"]}


@pytest.fixture
def svc(definitions: Path) -> RuntimeDefinition:
    toml = definitions / "svc.toml"
    toml.write_text(SVC_TOML.replace('platforms = ["debian-12"]', 'platforms = ["debian-12", "rhel-9"]'))
    return load_definition(toml)


@pytest.fixture
def signer(tmp_path: Path) -> KeyFileSigner:
    init_key(tmp_path / "farm.pem")
    return KeyFileSigner(tmp_path / "farm.pem")


def put_runtime_build(
    store: LocalStore, build: int, lock: str = "cd" * 32, execution_id: str = "exec-1"
) -> None:
    """What `buildfarm runtime build --build N --execution-id ID` leaves: its artifact, then
    manifest.json."""
    directory = runtime_artifact_dir(*CELL, build)
    tarball = b"a runtime tarball"
    store.put(f"{directory}/runtime-svc.tar.gz", tarball)
    store.put_json(
        f"{directory}/manifest.json",
        {
            "runtime": {"name": "svc", "version": "2.1.0", "prefix": "/opt/runtimes/svc/2.1.0"},
            "platform": "debian-12", "arch": "x86_64", "build": build, "execution_id": execution_id,
            "python": {"version": "3.13.5", "build": 1, "tarball": "builds/...", "sha256": "ef" * 32},
            "requirements": {"kind": "requirements.txt", "file": "svc/requirements.txt", "sha256": lock},
            "artifacts": [{"type": "tarball", "file": "runtime-svc.tar.gz",
                           "sha256": hashlib.sha256(tarball).hexdigest(), "size": len(tarball)}],
        },
    )  # fmt: skip


def test_plan_writes_runtime_items_beside_the_python_items(local_store, config, svc) -> None:
    write_releases(local_store, ["3.13.5"])
    write_published_matrix(local_store, ["3.13.5"], ["debian-12"], ["x86_64"])
    result = plan(REQUEST, local_store, config, "exec-1", NOW, runtimes=[svc])
    assert [item["cell"] for item in read_json(local_store, "plans/exec-1/items.json")] == [
        "3.13.5/rhel-9/x86_64"
    ]
    assert set(read_json(local_store, "plans/exec-1/items.json")[0]) == {
        "cell",
        "spec",
        "job_definition",
        "job_queue_arch",
    }  # fmt: skip  (the Python items' shape, as the Build Map and Finalize read it)
    assert result.summary["runtimes"] == {
        "planned": 1, "deferred": 0, "broken": 0,
        "items": {"bucket": "", "key": "plans/exec-1/runtime-items.json"},
    }  # fmt: skip
    [item] = read_json(local_store, "plans/exec-1/runtime-items.json")
    assert (
        item["cell"] == "svc/2.1.0/debian-12/x86_64" and item["build"] == 1
    )  # rhel-9's Python is not published
    assert item["command"][-6:] == [
        "--build",
        "1",
        "--execution-id",
        "exec-1",
        "--store",
        local_store.location,
    ]
    assert read_json(local_store, runtime_claim_key(*CELL))["execution_id"] == "exec-1"
    assert read_json(local_store, "runs/exec-1.json")["planned"] == 2  # the Python and runtime cells


def test_a_plan_of_runtimes_only_writes_them_and_opens_a_run(local_store, config, svc) -> None:
    write_releases(local_store, ["3.13.5"])
    write_published_matrix(local_store, ["3.13.5"], ["debian-12", "rhel-9"], ["x86_64"])
    dry = plan({**REQUEST, "dry_run": True}, local_store, config, "exec-0", NOW, runtimes=[svc])
    assert dry.summary["runtimes"]["planned"] == 2 and not local_store.exists(
        "plans/exec-0/runtime-items.json"
    )
    assert not local_store.exists(runtime_claim_key(*CELL))
    result = plan(REQUEST, local_store, config, "exec-1", NOW, runtimes=[svc])
    assert result.counts["planned"] == 0 and result.summary["runtimes"]["planned"] == 2
    assert read_json(local_store, "plans/exec-1/items.json") == []
    assert len(read_json(local_store, "plans/exec-1/runtime-items.json")) == 2
    # Open until Finalize (or recovery, if the execution ends first) decides the runtime items.
    assert read_json(local_store, "runs/exec-1.json")["planned"] == 2
    assert plan(REQUEST, local_store, config, "exec-2", NOW).summary["runtimes"]["planned"] == 0


def test_publish_runtime_then_finalize_decide_every_runtime_item(local_store, config, svc, signer) -> None:
    write_releases(local_store, ["3.13.5"])
    write_published_matrix(local_store, ["3.13.5"], ["debian-12", "rhel-9"], ["x86_64"])
    summary = plan(REQUEST, local_store, config, "exec-1", NOW, runtimes=[svc]).summary
    debian, rhel = read_runtime_items(local_store, summary["runtimes"]["items"])
    put_runtime_build(local_store, 1, svc.lock_sha256())
    # PublishRuntime decided debian-12's item; rhel-9's job failed and its PublishRuntime never ran.
    assert decide_runtime_item(local_store, debian, NOW, signer=signer).status == "published"
    outcomes = finalize_runtime_items(local_store, summary, config, NOW, signer=signer)
    assert [(o.cell, o.status) for o in outcomes] == [(debian.cell, "published"), (rhel.cell, "failed")]
    assert outcomes[1].reason == "no manifest.json"
    assert read_json(local_store, runtime_claim_key(*rhel.runtime_cell))["released"] is True
    assert runtime_cells(read_json(local_store, VERSIONS_KEY))[CELL].build == 1
    assert "svc" in local_store.read("index.html")[0].decode()  # derived files: no Python cell did it
    again = finalize_runtime_items(local_store, summary, config, NOW, signer=signer)
    assert again == outcomes  # recorded outcomes are read back, not decided twice


def test_a_failed_job_is_a_failed_runtime_with_its_reason(local_store, config, svc, signer) -> None:
    write_releases(local_store, ["3.13.5"])
    write_published_matrix(local_store, ["3.13.5"], ["debian-12"], ["x86_64"])
    summary = plan(REQUEST, local_store, config, "exec-1", NOW, runtimes=[svc]).summary
    [item] = read_runtime_items(local_store, summary["runtimes"]["items"])
    put_runtime_build(local_store, 1)  # files a failed job left: not published
    outcome = decide_runtime_item(local_store, item, NOW, "build job failed: exit 2", signer=signer)
    assert (outcome.status, outcome.reason) == ("failed", "build job failed: exit 2")
    assert not runtime_cells(read_json(local_store, VERSIONS_KEY))
    recorded = read_json(local_store, "plans/exec-1/runtime-outcomes/svc/2.1.0/debian-12/x86_64.json")
    assert recorded["status"] == "failed"


def test_a_runtime_build_of_another_lock_than_planned_is_not_published(
    local_store, config, svc, signer
) -> None:
    """The item records the planned lock's sha256: a build whose manifest names another lock
    (planted, or built from other definitions than planned) fails, with the reason."""
    write_releases(local_store, ["3.13.5"])
    write_published_matrix(local_store, ["3.13.5"], ["debian-12"], ["x86_64"])
    summary = plan(REQUEST, local_store, config, "exec-1", NOW, runtimes=[svc]).summary
    [item] = read_runtime_items(local_store, summary["runtimes"]["items"])
    assert item.lock_sha256 == svc.lock_sha256()
    put_runtime_build(local_store, 1, "cd" * 32)
    outcome = decide_runtime_item(local_store, item, NOW, signer=signer)
    assert (outcome.status, outcome.reason) == (
        "failed",
        f"manifest.json's requirements sha256 '{'cd' * 32}' is not the planned lock's {svc.lock_sha256()}",
    )
    assert not runtime_cells(read_json(local_store, VERSIONS_KEY))
    # An item written before the field (no lock recorded) is decided as before.
    older = item.model_copy(update={"lock_sha256": None})
    assert decide_runtime_item(local_store, older, NOW, signer=signer).status == "published"
