"""A manifest the publish side cannot attest (a file name the provenance cannot list, timings
or a built_at that make no time) fails its own cell with the reason, when it is parsed: the
other cells publish, Finalize closes the run, and recovery never retries it. A run whose
finalizing fails anyway is left open without stopping the recovery of the others."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest

import buildfarm.finalize
from buildfarm.attest.build_files import AttestationError, build_times, provenance_document
from buildfarm.attest.provenance import Subject
from buildfarm.attest.verify_build import parse_sums
from buildfarm.models import ManifestArtifact
from buildfarm.plan import plan
from buildfarm.publish import publish, publish_cell
from buildfarm.recovery import recover
from buildfarm.runtimes.package import file_names
from buildfarm.store import StoreError, check_key

from .conftest import NOW, fake_build, read_json

DEBIAN_12 = {"versions": ["3.13.5"], "platforms": ["debian-12"]}
X86 = "3.13.5/debian-12/x86_64"
ARM = "3.13.5/debian-12/aarch64"
SHA = "a" * 64


def with_extra_artifact(store, spec, manifest: dict, name: str) -> None:
    data = b"extra"
    store.put(f"{spec.artifact_dir}/{name}", data)
    artifact = {"type": "tarball", "file": name, "sha256": hashlib.sha256(data).hexdigest(), "size": 5}
    store.put_json(
        f"{spec.artifact_dir}/manifest.json", {**manifest, "artifacts": [*manifest["artifacts"], artifact]}
    )


BAD_MANIFESTS = [
    ({"file": "python-3.13.5@debian-12.tar.gz"}, "artifacts.2.file: String should match pattern"),
    ({"file": "python=3.13.5.tar.gz"}, "artifacts.2.file: String should match pattern"),
    ({"file": "python,3.13.5.tar.gz"}, "artifacts.2.file: String should match pattern"),
    ({"file": "_python-3.13.5.deb"}, "artifacts.2.file: String should match pattern"),
    ({"timings": {"make": 1e12}}, "timings.make: Input should be less than or equal to 2592000"),
    ({"timings": {"make": float("nan")}}, "timings.make: Input should be a finite number"),
    ({"timings": {"make": -5.0}}, "timings.make: Input should be greater than or equal to 0"),
    ({"timings": {"make": True}}, "timings.make: Input should be a valid number"),
    ({"timings": {"make": "60"}}, "timings.make: Input should be a valid number"),
    ({"timings": {f"p{n}": 2_000_000.0 for n in range(3)}}, "timings: Value error, the phases add up"),
    ({"built_at": "0001-01-01T00:00:30Z"}, "built_at: Value error, '0001-01-01T00:00:30Z' is not between"),
    ({"built_at": "9999-12-31T23:59:59-23:59"}, "built_at: Value error, '9999-12-31T23:59:59-23:59' is out"),
    ({"built_at": "yesterday"}, "built_at: Value error, 'yesterday' is not an ISO 8601 time"),
]


@pytest.mark.parametrize(("change", "reason"), BAD_MANIFESTS)
def test_a_manifest_that_cannot_be_attested_fails_its_cell_with_the_reason(
    local_store, config, change, reason
):
    result = plan(DEBIAN_12, local_store, config, "exec-1", NOW)
    x86, arm = result.items
    manifest = fake_build(local_store, x86.spec)
    fake_build(local_store, arm.spec)
    if "file" in change:
        with_extra_artifact(local_store, x86.spec, manifest, change["file"])
    else:
        local_store.put_json(f"{x86.spec.artifact_dir}/manifest.json", {**manifest, **change})
    outcome = publish_cell(x86, local_store, NOW, signer=None)
    assert outcome.status == "failed" and outcome.reason.startswith(f"manifest.json invalid: {reason}")
    finalized = publish(result.summary, local_store, config, now=NOW, signer=None)
    assert finalized.published == [ARM] and [f.cell for f in finalized.failed] == [X86]
    assert not local_store.exists("runs/exec-1.json")  # the run closed: nothing retries it
    assert not local_store.exists(f"{x86.spec.artifact_dir}/provenance.json")


def test_recovery_closes_a_dead_run_with_a_bad_manifest(local_store, config):
    result = plan(DEBIAN_12, local_store, config, "dead-run", NOW)
    x86, arm = result.items
    manifest = fake_build(local_store, x86.spec)
    fake_build(local_store, arm.spec)
    local_store.put_json(f"{x86.spec.artifact_dir}/manifest.json", {**manifest, "timings": {"make": 1e12}})
    later = NOW + timedelta(minutes=5)
    recovery = recover(local_store, config, later, is_running=lambda run: False, signer=None)
    assert (recovery.finalized, recovery.published, recovery.failed) == (["dead-run"], [ARM], [X86])
    assert read_json(local_store, "claims/3.13.5/debian-12/x86_64.json")["released"] is True
    assert recover(local_store, config, later, is_running=lambda run: False, signer=None).finalized == []


def test_one_run_that_cannot_be_finalized_does_not_stop_the_others(local_store, config, monkeypatch):
    first = plan({**DEBIAN_12, "arches": ["x86_64"]}, local_store, config, "run-a", NOW)
    second = plan({**DEBIAN_12, "arches": ["aarch64"]}, local_store, config, "run-b", NOW)
    for item in (*first.items, *second.items):
        fake_build(local_store, item.spec)
    real_publish = buildfarm.finalize.publish

    def failing_for_run_a(summary, *args, **kwargs):
        if summary["plan_id"] == "run-a":
            raise OverflowError("date value out of range")  # what escaped recover() before
        return real_publish(summary, *args, **kwargs)

    monkeypatch.setattr(buildfarm.finalize, "publish", failing_for_run_a)
    recovery = recover(local_store, config, NOW, is_running=lambda run: False, signer=None)
    assert (recovery.finalized, recovery.published) == (["run-b"], [ARM])
    assert local_store.exists("runs/run-a.json")  # left open: the next recovery tries again


# -- one rule for the names of a build's files --------------------------------------------------

BUILDER_NAMES = [
    "python-3.13.5-debian-12-x86_64.tar.gz",
    "python-3.13.5_1_amd64.deb",
    "python-3.13.5-1.x86_64.rpm",
    "python-3.14.0rc2-opensuse-156-aarch64.tar.gz",
    "python-3.14.0rc2_12_arm64.deb",
    "manifest.json",
    "sbom.cdx.json",
    "provenance.json",
    "provenance.json.sig",
    "SHA256SUMS",
    "SHA256SUMS.sig",
    "build.log",
    *file_names("fastapi-demo", "1.0.0", "debian-12", "x86_64", 3).values(),
    *file_names("svc", "v2.1.0+local", "rhel-9", "aarch64", 1).values(),
]


@pytest.mark.parametrize("name", BUILDER_NAMES)
def test_every_name_the_builder_writes_passes_every_check(name):
    ManifestArtifact(type="tarball", file=name, sha256=SHA, size=1)
    Subject(name=name, sha256=SHA)
    assert parse_sums(f"{SHA}  {name}\n") == ({name: SHA}, [])
    check_key(f"builds/3.13.5/debian-12/x86_64/1/{name}")


@pytest.mark.parametrize(
    "name", ["a@b.tar.gz", "a=b.deb", "a,b.rpm", "a~rc1.tar.gz", ".hidden", "-x", "a" * 201]
)
def test_a_name_one_check_refuses_every_check_refuses(name):
    with pytest.raises(ValueError):
        ManifestArtifact(type="tarball", file=name, sha256=SHA, size=1)
    with pytest.raises(ValueError):
        Subject(name=name, sha256=SHA)
    assert parse_sums(f"{SHA}  {name}\n")[1]
    if "~" in name:
        with pytest.raises(StoreError):
            check_key(f"builds/x/{name}")


def test_the_attestation_functions_name_what_they_cannot_use():
    """Direct callers (not through a parsed manifest) get an AttestationError, not a crash."""
    spec = {"source": {"url": "https://x/Python-3.13.5.tar.xz", "sha256": SHA}, "execution_id": "e"}
    manifest = {"built_at": "2025-06-11T12:00:00Z"}
    with pytest.raises(
        AttestationError, match=r"^manifest.json: provenance\.name: String should match pattern"
    ):
        provenance_document(manifest, spec, {"a@b.tar.gz": SHA})
    for timings in ({"make": 1e12}, {"make": float("nan")}, {"make": "?"}):
        with pytest.raises(AttestationError, match=r"^manifest.json: timings\.make: "):
            build_times({**manifest, "timings": timings})
    with pytest.raises(AttestationError, match=r"^manifest.json: built_at '0001-01-01T00:00:30Z' is not"):
        build_times({"built_at": "0001-01-01T00:00:30Z", "timings": {"make": 60.0}})
