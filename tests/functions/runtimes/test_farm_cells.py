"""Runtime cells in a farm run, without building one: verify_runtime's verdicts (table),
publish_runtime (merged into versions.json's runtimes, claim released, failed builds not
merged), and plan_run_runtimes (only the run's platforms and arches; claimed with a number
past what is in the store; a cell another live run holds is skipped; a dry run writes nothing;
a cell another run publishes between the catalog read and the claim is not rebuilt).
Fast: a directory store, no network."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from functions.test_plan_claim_order import PublishingStore

from buildfarm.attest.signing import KeyFileSigner, init_key, verify_signature
from buildfarm.attest.verify_build import LocalBuild, verify_build
from buildfarm.catalog.versions_json import read_versions, runtime_cells
from buildfarm.claims import Claim
from buildfarm.config import FarmConfig
from buildfarm.layout import VERSIONS_KEY
from buildfarm.models import Attestations
from buildfarm.runtimes.cloud_items import plan_runtime_items
from buildfarm.runtimes.definitions import load_definition
from buildfarm.runtimes.farm_cells import plan_run_runtimes
from buildfarm.runtimes.keys import runtime_artifact_dir, runtime_claim_key
from buildfarm.runtimes.publish import publish_runtime
from buildfarm.runtimes.verify import verify_runtime
from buildfarm.store import LocalStore

NOW = datetime(2026, 11, 22, 10, 0, 0, tzinfo=UTC)
CELL = ("svc", "2.1.0", "debian-12", "x86_64")
HASH = "--hash=sha256:" + "ab" * 32
TOML = """name = "svc"
version = "2.1.0"
python = "3.13"
requirements = "svc/requirements.txt"
prefix = "/opt/runtimes/svc/2.1.0"
platforms = ["debian-12", "ubuntu-2404"]
arches = ["x86_64", "aarch64"]
"""


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    store = LocalStore(tmp_path / "store")
    store.create()
    return store


def put_build(
    store: LocalStore, build: int = 1, changes: dict | None = None, execution_id: str | None = "run-1"
) -> dict:
    """A runtime build as runtimes.package publishes it for execution_id: artifacts, then
    manifest.json."""
    directory = runtime_artifact_dir(*CELL, build)
    tarball = b"a runtime tarball"
    store.put(f"{directory}/runtime-svc.tar.gz", tarball)
    manifest = {
        "runtime": {"name": "svc", "version": "2.1.0", "prefix": "/opt/runtimes/svc/2.1.0"},
        "platform": "debian-12",
        "arch": "x86_64",
        "build": build,
        **({"execution_id": execution_id} if execution_id else {}),  # None: a standalone build's
        "python": {"version": "3.13.5", "build": 1, "tarball": "builds/...", "sha256": "ef" * 32},
        "requirements": {"kind": "requirements.txt", "file": "svc/requirements.txt", "sha256": "cd" * 32},
        "artifacts": [
            {
                "type": "tarball",
                "file": "runtime-svc.tar.gz",
                "sha256": hashlib.sha256(tarball).hexdigest(),
                "size": len(tarball),
            },
        ],
        **(changes or {}),
    }
    store.put_json(f"{directory}/manifest.json", manifest)
    return manifest


def test_a_complete_build_verifies_into_its_catalog_entry(store) -> None:
    put_build(store)
    entry, reason = verify_runtime(store, CELL, 1, NOW)
    assert reason == "" and entry is not None
    assert entry.python.model_dump() == {"version": "3.13.5", "build": 1}
    assert entry.requirements.model_dump() == {"kind": "requirements.txt", "sha256": "cd" * 32}
    assert entry.manifest == "runtimes/svc/2.1.0/debian-12/x86_64/1/manifest.json"
    assert [a.key for a in entry.artifacts] == ["runtimes/svc/2.1.0/debian-12/x86_64/1/runtime-svc.tar.gz"]


@pytest.mark.parametrize(
    ("changes", "tamper", "reason"),
    [
        (None, None, "no manifest.json"),
        ({"build": 2}, None, "manifest.json is of svc/2.1.0/debian-12/x86_64 build 2, not build 1"),
        ({"arch": "aarch64"}, None, "manifest.json is of svc/2.1.0/debian-12/aarch64 build 1"),
        ({"artifacts": []}, None, "manifest.json invalid: artifacts"),
        ({}, b"another tarball", "artifact runtime-svc.tar.gz: sha256 "),
        ({}, "delete", "artifact runtime-svc.tar.gz is missing from the store"),
    ],
    ids=["no-manifest", "other-build", "other-cell", "no-artifacts", "changed-artifact", "missing-artifact"],
)
def test_what_does_not_verify_says_why(store, changes, tamper, reason) -> None:
    if changes is not None:
        put_build(store, changes=changes)
    key = f"{runtime_artifact_dir(*CELL, 1)}/runtime-svc.tar.gz"
    if tamper == "delete":
        store.delete(key)
    elif tamper:
        (store.root / key).write_bytes(tamper)
    entry, why = verify_runtime(store, CELL, 1, NOW)
    assert entry is None and why.startswith(reason), why


def claim(store: LocalStore, execution_id: str, build: int, expires: datetime) -> None:
    marker = Claim(
        cell="svc/2.1.0/debian-12/x86_64",
        execution_id=execution_id,
        plan_id=execution_id,
        build=build,
        claimed_at="2026-11-22T09:00:00Z",
        expires_at=expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    store.put_json(runtime_claim_key(*CELL), marker.model_dump(mode="json"))


def test_publishing_merges_a_verified_build_and_releases_the_claim(store) -> None:
    put_build(store)
    claim(store, "run-1", 1, NOW + timedelta(hours=1))
    outcome = publish_runtime(store, CELL, 1, "run-1", NOW, signer=None)
    assert outcome.status == "published"
    document, _ = read_versions(store)
    assert runtime_cells(document)[CELL].build == 1 and document["python_versions"] == []
    released, _ = store.read_json(runtime_claim_key(*CELL))
    assert released["released"] is True and released["build"] == 1
    assert publish_runtime(store, CELL, 1, "run-1", NOW, signer=None).status == "published"  # idempotent


@pytest.mark.parametrize("execution_id", ["run-0", None])
def test_a_build_not_made_for_the_claiming_execution_is_not_published(store, execution_id) -> None:
    """A runtime build is published only if it was planned (DESIGN's integrity rules): one
    whose manifest names another execution, or none (a standalone build put at the claimed
    number), is failed, and nothing is merged."""
    put_build(store, execution_id=execution_id)
    claim(store, "run-1", 1, NOW + timedelta(hours=1))
    outcome = publish_runtime(store, CELL, 1, "run-1", NOW, signer=None)
    assert outcome.status == "failed"
    assert outcome.reason == (
        f"manifest.json's execution id {execution_id!r} is not that of the execution that planned it, run-1"
    )
    assert not store.exists("versions.json") or not runtime_cells(read_versions(store)[0])


def test_a_failed_build_is_not_merged_even_if_its_files_are_there(store) -> None:
    put_build(store)
    claim(store, "run-1", 1, NOW + timedelta(hours=1))
    outcome = publish_runtime(
        store, CELL, 1, "run-1", NOW, failure="installing the requirements failed: x", signer=None
    )
    assert (outcome.status, outcome.reason) == ("failed", "installing the requirements failed: x")
    assert not store.exists(VERSIONS_KEY)
    assert store.read_json(runtime_claim_key(*CELL))[0]["released"] is True


def write_store_with_python(store: LocalStore, platforms: list[str]) -> None:
    builds = {
        "3.13.5": {
            platform: {"x86_64": {"build": 1, "published": "2026-11-22T09:00:00Z",
                                  "manifest": f"builds/3.13.5/{platform}/x86_64/1/manifest.json",
                                  "artifacts": [{"type": "tarball", "sha256": "ab" * 32, "size": 1,
                                                 "key": f"builds/3.13.5/{platform}/x86_64/1/p.tar.gz"}]}}
            for platform in platforms
        }
    }  # fmt: skip
    store.put_json(VERSIONS_KEY, {"schema_version": 1, "updated": None, "python_versions": ["3.13.5"],
                                  "builds": builds})  # fmt: skip


@pytest.fixture
def definition(tmp_path: Path):
    (tmp_path / "defs" / "svc").mkdir(parents=True)
    (tmp_path / "defs" / "svc" / "requirements.txt").write_text(f"six==1.17.0 {HASH}\n")
    (tmp_path / "defs" / "svc.toml").write_text(TOML)
    return load_definition(tmp_path / "defs" / "svc.toml")


def plan(store, definition, where, **options):
    options = {"execution_id": "run-2", "now": NOW, "ttl_seconds": 3600, "dry_run": False, **options}
    return plan_run_runtimes(store, [definition], where, **options)


def test_only_the_runs_cells_are_planned_and_claimed_past_what_the_store_holds(store, definition) -> None:
    write_store_with_python(store, ["debian-12"])
    store.put(f"{runtime_artifact_dir(*CELL, 3)}/runtime-svc.tar.gz", b"left by a dead build")
    where = {("debian-12", "x86_64"), ("ubuntu-2404", "x86_64")}
    result = plan(store, definition, where)
    assert [(c.name, c.build, c.item.reason) for c in result.claimed] == [
        ("svc/2.1.0/debian-12/x86_64", 4, "not built yet")
    ]
    assert result.plan.waiting == [
        (("svc", "2.1.0", "ubuntu-2404", "x86_64"), "no published Python 3.13 for ubuntu-2404/x86_64")
    ]
    marker, _ = store.read_json(runtime_claim_key(*CELL))
    assert (marker["execution_id"], marker["build"]) == ("run-2", 4)
    # A published, current cell is not planned again.
    put_build(
        store, 4, {"requirements": {"kind": "requirements.txt", "sha256": definition.lock_sha256()}}, "run-2"
    )
    assert publish_runtime(store, CELL, 4, "run-2", NOW, signer=None).status == "published"
    again = plan(store, definition, {("debian-12", "x86_64")}, execution_id="run-3")
    assert again.claimed == [] and again.plan.current == [CELL]


def test_a_cell_another_live_run_holds_is_skipped_and_a_dry_run_writes_nothing(store, definition) -> None:
    write_store_with_python(store, ["debian-12"])
    claim(store, "run-1", 1, NOW + timedelta(hours=1))
    held = plan(store, definition, {("debian-12", "x86_64")})
    assert held.claimed == [] and held.held == [
        ("svc/2.1.0/debian-12/x86_64", 1, "run-1 until 2026-11-22T11:00:00Z")
    ]
    store.delete(runtime_claim_key(*CELL))
    before = sorted(path for path in store.root.rglob("*"))
    dry = plan(store, definition, {("debian-12", "x86_64")}, dry_run=True)
    assert [(c.name, c.build) for c in dry.claimed] == [("svc/2.1.0/debian-12/x86_64", 1)]
    assert sorted(path for path in store.root.rglob("*")) == before


def test_an_expired_claim_of_a_dead_run_is_taken_over_with_the_next_number(store, definition) -> None:
    write_store_with_python(store, ["debian-12"])
    claim(store, "run-1", 1, NOW - timedelta(minutes=1))
    result = plan(store, definition, {("debian-12", "x86_64")})
    assert [(c.name, c.build) for c in result.claimed] == [("svc/2.1.0/debian-12/x86_64", 2)]
    assert json.loads((store.root / runtime_claim_key(*CELL)).read_text())["execution_id"] == "run-2"


def test_a_published_runtime_is_signed_and_versions_json_too(store, tmp_path) -> None:
    """SHA256SUMS over the verified artifacts and manifest.json, its signature by the farm's key
    (openssl's DER ECDSA), versions.json.sig; a second publish keeps them (idempotent)."""
    put_build(store)
    init_key(tmp_path / "farm.pem")
    signer = KeyFileSigner(tmp_path / "farm.pem")
    outcome = publish_runtime(store, CELL, 1, "run-1", NOW, signer=signer)
    assert outcome.status == "published", outcome.reason
    directory = store.root / runtime_artifact_dir(*CELL, 1)
    sums = (directory / "SHA256SUMS").read_bytes()
    assert sums.decode().splitlines() == [
        f"{hashlib.sha256((directory / name).read_bytes()).hexdigest()}  {name}"
        for name in ("manifest.json", "runtime-svc.tar.gz")
    ]
    keys = [signer.public_key_pem()]
    assert verify_signature(sums, (directory / "SHA256SUMS.sig").read_bytes(), keys)
    versions = (store.root / VERSIONS_KEY).read_bytes()
    assert verify_signature(versions, (store.root / "versions.json.sig").read_bytes(), keys)
    assert publish_runtime(store, CELL, 1, "run-1", NOW, signer=signer).status == "published"


@pytest.mark.parametrize(
    "listed",
    [Attestations.checksums_only().model_dump(exclude_none=True), None],
    ids=["listed", "older-manifest"],
)
def test_a_published_runtime_verifies_by_what_its_manifest_lists(store, tmp_path, listed) -> None:
    """A runtime's manifest lists SHA256SUMS and its signature (runtimes.package): `buildfarm
    verify`'s check looks for no SBOM or provenance; a manifest older than the list verifies too."""
    put_build(store, changes={"attestations": listed} if listed else None)
    init_key(tmp_path / "farm.pem")
    signer = KeyFileSigner(tmp_path / "farm.pem")
    assert publish_runtime(store, CELL, 1, "run-1", NOW, signer=signer).status == "published"
    directory = store.root / runtime_artifact_dir(*CELL, 1)
    keys = [signer.public_key_pem()]
    assert verify_build(LocalBuild(directory), keys) == []
    (directory / "SHA256SUMS.sig").unlink()
    assert [line.split(":")[0] for line in verify_build(LocalBuild(directory), keys)] == ["SHA256SUMS.sig"]


def test_a_runtime_manifest_listing_an_sbom_is_not_published(store) -> None:
    put_build(store, changes={"attestations": Attestations().model_dump()})
    outcome = publish_runtime(store, CELL, 1, "run-1", NOW, signer=None)
    assert (outcome.status, outcome.reason) == (
        "failed",
        "attestation: manifest.json: attestations: a runtime build has no SBOM or provenance",
    )
    assert not store.exists(f"{runtime_artifact_dir(*CELL, 1)}/SHA256SUMS")


def test_a_build_dir_with_another_sha256sums_is_not_published(store, tmp_path) -> None:
    put_build(store)
    store.put(f"{runtime_artifact_dir(*CELL, 1)}/SHA256SUMS", b"planted\n")
    outcome = publish_runtime(store, CELL, 1, "run-1", NOW, signer=None)
    assert outcome.status == "failed" and outcome.reason.startswith("attestation: SHA256SUMS is already in")
    assert not store.exists(VERSIONS_KEY)


def test_cloud_items_run_buildfarm_runtime_build_on_the_cells_builder_job(store, definition) -> None:
    """The pure planning part of runtimes in the workflow: one item per claimed cell, its Batch
    job on the platform x arch job definition and queue, its command an argv at the claimed build."""
    write_store_with_python(store, ["debian-12", "ubuntu-2404"])
    config = FarmConfig.defaults(store=str(store.root))
    where = {("debian-12", "x86_64"), ("ubuntu-2404", "x86_64"), ("debian-12", "aarch64")}
    items, runtimes = plan_runtime_items(store, config, [definition], where, "exec-1", NOW)
    assert [(item.cell, item.build, item.job_definition, item.job_queue_arch) for item in items] == [
        ("svc/2.1.0/debian-12/x86_64", 1, "debian-12-x86_64", "x86_64"),
        ("svc/2.1.0/ubuntu-2404/x86_64", 1, "ubuntu-2404-x86_64", "x86_64"),
    ]
    assert items[0].command == [
        "buildfarm", "runtime", "build", "svc", "--platform", "debian-12", "--arch", "x86_64",
        "--runtime-version", "2.1.0", "--build", "1", "--execution-id", "exec-1", "--store", store.location,
    ]  # fmt: skip
    assert items[0].kind == "runtime" and items[0].python == {"version": "3.13.5", "build": 1}
    assert items[0].execution_id == "exec-1" and items[0].reason == "not built yet"
    assert runtimes.plan.waiting[0][0] == ("svc", "2.1.0", "debian-12", "aarch64")
    assert store.read_json(runtime_claim_key(*CELL))[0]["execution_id"] == "exec-1"
    again, _ = plan_runtime_items(store, config, [definition], where, "exec-2", NOW)
    assert again == []  # held by exec-1 (its claim has not expired)


def current_build(store: LocalStore, definition, build: int, execution_id: str) -> None:
    """A runtime build of CELL from the definition's lock (so current) for execution_id."""
    lock = {"requirements": {"kind": "requirements.txt", "sha256": definition.lock_sha256()}}
    put_build(store, build, lock, execution_id)


@pytest.mark.parametrize("dry_run", [False, True], ids=["claim", "dry-run"])
def test_a_runtime_published_between_the_catalog_read_and_the_claim_is_not_rebuilt(
    tmp_path, definition, dry_run
) -> None:
    """run-1 publishes CELL (versions.json first, then its claim released) right after run-2's
    planner read versions.json: run-2 gives the cell back instead of building it at 2, and its
    budget of one goes to the next cell."""
    store = PublishingStore(tmp_path / "racing")
    store.create()
    write_store_with_python(store, ["debian-12", "ubuntu-2404"])
    where = {("debian-12", "x86_64"), ("ubuntu-2404", "x86_64")}
    first = plan(store, definition, where, execution_id="run-1", limit=1)
    assert [(c.item.cell, c.build) for c in first.claimed] == [(CELL, 1)]
    current_build(store, definition, 1, "run-1")
    store.between = lambda: publish_runtime(store, CELL, 1, "run-1", NOW, signer=None)
    second = plan(store, definition, where, execution_id="run-2", limit=1, dry_run=dry_run)
    assert store.between is None  # the publish did run between the read and the claim
    assert second.plan.current == [CELL] and second.held == [] and second.deferred == []
    assert [(c.name, c.build) for c in second.claimed] == [("svc/2.1.0/ubuntu-2404/x86_64", 1)]
    marker, _ = store.read_json(runtime_claim_key(*CELL))
    # Released either way: by run-1 (a dry run wrote nothing), or by run-2 after taking it over.
    expected = ("run-1", 1) if dry_run else ("run-2", 2)
    assert marker["released"] is True and (marker["execution_id"], marker["build"]) == expected
    again = plan(store, definition, {("debian-12", "x86_64")}, execution_id="run-3")
    assert again.claimed == [] and again.plan.current == [CELL]


def test_a_runtime_published_meanwhile_from_another_lock_is_still_built(tmp_path, definition) -> None:
    """What run-1 published meanwhile is not current for run-2's plan (another lock): run-2
    keeps its claim, numbered past run-1's build."""
    store = PublishingStore(tmp_path / "racing")
    store.create()
    write_store_with_python(store, ["debian-12"])
    where = {("debian-12", "x86_64")}
    assert [c.build for c in plan(store, definition, where, execution_id="run-1").claimed] == [1]
    put_build(store, 1, execution_id="run-1")  # requirements sha256 "cd" * 32, not the definition's
    store.between = lambda: publish_runtime(store, CELL, 1, "run-1", NOW, signer=None)
    second = plan(store, definition, where, execution_id="run-2")
    assert store.between is None
    assert [(c.item.cell, c.build) for c in second.claimed] == [(CELL, 2)] and second.plan.current == []
    assert store.read_json(runtime_claim_key(*CELL))[0]["execution_id"] == "run-2"
