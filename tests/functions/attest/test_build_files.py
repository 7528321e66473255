"""The publish side's files of a build directory (buildfarm.attest.build_files) and which key
signs them (buildfarm.attest.farm_signer): the manifest facts they need, named when missing;
create-only writes; the signer chosen from the configuration."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from buildfarm.attest.build_files import (
    AttestationError,
    attest_build,
    build_times,
    manifest_attestations,
    put_create_only,
    sbom_document,
    sign_build_dir,
    signature_status,
    sums_text,
)
from buildfarm.attest.farm_signer import local_key_config, require_signer, signer_for
from buildfarm.attest.signing import KeyFileSigner, KmsSigner, init_key, verify_signature
from buildfarm.config import ConfigError, FarmConfig
from buildfarm.errors import UsageError
from buildfarm.models import Attestations, Manifest
from buildfarm.store import LocalStore

SPEC = {
    "version": "3.13.5",
    "platform": "debian-12",
    "arch": "x86_64",
    "build": 1,
    "source": {"url": "https://www.python.org/ftp/python/3.13.5/Python-3.13.5.tar.xz", "sha256": "1" * 64},
}
FACTS = {"distro_id": "debian", "distro_version": "12"}


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        (
            {"built_at": "2025-06-11T12:00:00Z"},
            "manifest.json: no sbom_facts (a builder older than the SBOM?)",
        ),
        ({"sbom_facts": FACTS}, "manifest.json: no built_at"),
        (
            {"sbom_facts": FACTS, "built_at": "yesterday"},
            "manifest.json: built_at 'yesterday' is not an ISO 8601",
        ),
        (
            {"sbom_facts": FACTS, "built_at": "2025-06-11T12:00:00"},
            "manifest.json: built_at '2025-06-11T12:00:00' has no",
        ),
        (
            {
                "sbom_facts": {**FACTS, "linked": [{"kind": "deb", "name": "libc6"}]},
                "built_at": "2025-06-11T12:00:00Z",
            },
            "manifest.json: sbom_facts: linked.0.version: Field required",
        ),
    ],
)
def test_a_manifest_without_the_facts_is_named(manifest: dict, message: str) -> None:
    with pytest.raises(AttestationError) as caught:
        sbom_document(manifest, SPEC)
    assert str(caught.value).startswith(message)


def test_times_and_signature_status_come_from_the_manifest() -> None:
    started, finished = build_times({"built_at": "2025-06-11T12:00:00Z", "timings": {"make": 90, "x": 0.5}})
    assert (
        finished - started
    ).total_seconds() == 90.5 and finished.isoformat() == "2025-06-11T12:00:00+00:00"
    assert signature_status({"status": "verified", "fingerprint": "ABCD"}) == "verified by ABCD"
    assert signature_status({"status": "missing"}) == "missing"
    assert signature_status(None) == "not checked"


def test_sums_are_sorted_in_sha256sum_format() -> None:
    assert (
        sums_text({"b.deb": "2" * 64, "a.tar.gz": "1" * 64})
        == f"{'1' * 64}  a.tar.gz\n{'2' * 64}  b.deb\n".encode()
    )


def test_create_only_keeps_the_same_bytes_and_names_other_ones(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    put_create_only(store, "builds/x/SHA256SUMS", b"same\n")
    put_create_only(store, "builds/x/SHA256SUMS", b"same\n")
    with pytest.raises(AttestationError, match=r"^SHA256SUMS is already in builds/x with other content$"):
        put_create_only(store, "builds/x/SHA256SUMS", b"other\n")


ARTIFACT = {"type": "tarball", "file": "python.tar.gz", "sha256": "1" * 64, "size": 1}
MODEL_SPEC = {
    **SPEC,
    "prefix": "/opt/python/3.13.5",
    "store": "/srv/store",
    "artifact_dir": "builds/3.13.5/debian-12/x86_64/1",
    "execution_id": "exec-1",
}


def test_a_manifest_without_attestations_means_the_contracts_names() -> None:
    manifest = Manifest.model_validate({"spec": MODEL_SPEC, "artifacts": [ARTIFACT]})
    assert manifest.attestations.names() == [
        "sbom.cdx.json",
        "provenance.json",
        "SHA256SUMS",
        "SHA256SUMS.sig",
        "provenance.json.sig",
    ]
    assert manifest_attestations({}, {"python.tar.gz": "1" * 64}) == Attestations()


@pytest.mark.parametrize(
    ("attestations", "message"),
    [
        ({"sbom": "sbom.json"}, "sbom.json: not a name only the publish side writes"),
        ({"checksums": "manifest.json"}, "manifest.json: not a name only the publish side writes"),
        ({"provenance_signature": "SHA256SUMS.sig"}, "names must differ from each other"),
        ({"sbom": "../x.sig"}, "String should match pattern"),
        ({"sbom": "x.sig\n"}, "String should match pattern"),
        ({"vex": "vex.json"}, "Extra inputs are not permitted"),
        ({"provenance_signature": "x.sig"}, "provenance_signature is listed without a provenance"),
        # the artifact's name plus .sig is fine
        ({"provenance": "provenance.json", "provenance_signature": "python.tar.gz.sig"}, None),
    ],
)
def test_a_bad_attestation_list_is_named(attestations: dict, message: str | None) -> None:
    raw = {"spec": MODEL_SPEC, "artifacts": [ARTIFACT], "attestations": attestations}
    if message is None:
        assert Manifest.model_validate(raw).attestations.provenance_signature == "python.tar.gz.sig"
        return
    with pytest.raises(ValueError, match=message):
        Manifest.model_validate(raw)
    with pytest.raises(AttestationError, match=f"^manifest.json: attestations.*: .*{message}"):
        manifest_attestations(raw, {"python.tar.gz": "1" * 64})


def test_a_listed_manifest_has_no_file_for_a_role_it_leaves_out() -> None:
    """A runtime build lists its checksums and their signature only: no SBOM, no provenance."""
    runtime = Attestations.checksums_only()
    assert runtime.model_dump(exclude_none=True) == {
        "checksums": "SHA256SUMS",
        "checksums_signature": "SHA256SUMS.sig",
    }
    assert runtime.names() == ["SHA256SUMS", "SHA256SUMS.sig"]
    listed = {"attestations": runtime.model_dump(exclude_none=True)}
    assert manifest_attestations(listed, {"runtime.tar.gz": "1" * 64}) == runtime
    raw = {"spec": MODEL_SPEC, "artifacts": [ARTIFACT], **listed}
    assert Manifest.model_validate(raw).attestations == runtime
    assert Attestations.listed({}) == runtime  # the checksums' names default to the contract's


def test_a_cpython_build_listing_no_sbom_is_not_attested(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    manifest = {"attestations": Attestations.checksums_only().model_dump(exclude_none=True)}
    store.put_json(f"{MODEL_SPEC['artifact_dir']}/manifest.json", manifest)
    message = r"^manifest\.json: attestations: no sbom, provenance, provenance_signature \(a CPython build"
    with pytest.raises(AttestationError, match=message):
        attest_build(store, MODEL_SPEC, {"python.tar.gz": "1" * 64}, None)
    written = tmp_path / "store" / MODEL_SPEC["artifact_dir"]
    assert [path.name for path in written.iterdir()] == ["manifest.json"]  # nothing half-written


def test_an_attestation_named_as_an_artifact_is_refused() -> None:
    clash = {**ARTIFACT, "type": "deb", "file": "SHA256SUMS.sig"}
    raw = {"spec": MODEL_SPEC, "artifacts": [ARTIFACT, clash]}
    with pytest.raises(ValueError, match=r"SHA256SUMS\.sig: both an artifact and an attestation"):
        Manifest.model_validate(raw)
    with pytest.raises(
        AttestationError, match=r"^manifest\.json: attestations: SHA256SUMS\.sig is also an artifact$"
    ):
        manifest_attestations(raw, {"python.tar.gz": "1" * 64, "SHA256SUMS.sig": "2" * 64})


def test_sign_build_dir_for_any_build_dir(tmp_path: Path) -> None:
    """What a runtime build calls: its files' verified sha256s, signed SHA256SUMS."""
    store = LocalStore(tmp_path / "store")
    init_key(tmp_path / "key.pem")
    signer = KeyFileSigner(tmp_path / "key.pem")
    files = {"runtime.tar.gz": "1" * 64, "manifest.json": "2" * 64}
    sign_build_dir(store, "runtimes/r/1/debian-12/x86_64/1", files, signer)
    sign_build_dir(store, "runtimes/r/1/debian-12/x86_64/1", files, signer)  # again: kept
    sums, _ = store.read("runtimes/r/1/debian-12/x86_64/1/SHA256SUMS")
    signature, _ = store.read("runtimes/r/1/debian-12/x86_64/1/SHA256SUMS.sig")
    assert sums == sums_text(files)
    assert verify_signature(sums, signature, [signer.public_key_pem()]) is not None
    assert not store.exists("runtimes/r/1/debian-12/x86_64/1/provenance.json.sig")


@pytest.mark.parametrize(
    ("documents", "unsigned"),
    [
        ({}, "SHA256SUMS unsigned"),  # a runtime build: no provenance
        ({"provenance.json": b"{}"}, "SHA256SUMS and provenance.json unsigned"),
    ],
)
def test_without_a_key_the_warning_names_the_unsigned_files(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, documents: dict, unsigned: str
) -> None:
    store = LocalStore(tmp_path / "store")
    with caplog.at_level("WARNING", logger="buildfarm.attest.build_files"):
        sign_build_dir(store, "builds/x/1", {"python.tar.gz": "1" * 64}, None, documents=documents)
    assert [r.getMessage() for r in caplog.records] == [f"builds/x/1: no signing key configured: {unsigned}"]
    assert store.exists("builds/x/1/SHA256SUMS") and not store.exists("builds/x/1/SHA256SUMS.sig")


def test_the_signer_is_chosen_from_the_configuration(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")  # a Lambda's AWS_REGION (no call is made)
    init_key(tmp_path / "key.pem")
    kms = signer_for(FarmConfig.defaults(kms_key_id="alias/PythonBuildFarm-signing", signing_key="x"))
    assert isinstance(kms, KmsSigner) and kms.key_id == "alias/PythonBuildFarm-signing"
    assert isinstance(signer_for(FarmConfig.defaults(signing_key=str(tmp_path / "key.pem"))), KeyFileSigner)
    assert signer_for(FarmConfig.defaults()) is None
    with pytest.raises(
        UsageError, match=r"^no signing key: set BUILDFARM_KMS_KEY_ID .* or BUILDFARM_SIGNING_KEY"
    ):
        require_signer(FarmConfig.defaults())
    # The configuration names the key: FarmConfig.from_env reads the variables.
    environ = {"BUILDFARM_SIGNING_KEY": str(tmp_path / "key.pem")}
    assert isinstance(signer_for(FarmConfig.from_env(environ)), KeyFileSigner)
    assert signer_for(FarmConfig.from_env({})) is None


@pytest.mark.parametrize(
    "key_id",
    [
        "1234abcd-12ab-34cd-56ef-1234567890ab",
        "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        "alias/PythonBuildFarm-signing",
        "arn:aws:kms:eu-west-1:123456789012:alias/PythonBuildFarm-signing",
    ],
)
def test_kms_key_ids_the_stack_may_pass(key_id: str) -> None:
    assert FarmConfig.from_env({"BUILDFARM_KMS_KEY_ID": key_id}).kms_key_id == key_id


def test_a_bad_kms_key_id_is_one_line() -> None:
    with pytest.raises(ConfigError) as caught:
        FarmConfig.from_env({"BUILDFARM_KMS_KEY_ID": "key; rm -rf /"})
    assert (
        str(caught.value)
        == "BUILDFARM_KMS_KEY_ID: 'key; rm -rf /' is not a KMS key id, key ARN or alias/NAME"
    )


def test_a_local_run_creates_its_key_once_and_never_in_the_store(tmp_path: Path) -> None:
    path = tmp_path / "config" / "signing-key.pem"
    config, message = local_key_config(FarmConfig.defaults(signing_key=str(path)), tmp_path / "store")
    assert config.signing_key == str(path) and message is not None
    assert message.startswith(f"created the signing key {path} (SHA256:")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again, message = local_key_config(FarmConfig.defaults(signing_key=str(path)), tmp_path / "store")
    assert (again.signing_key, message) == (str(path), None)
    inside = tmp_path / "store" / "key.pem"
    with pytest.raises(UsageError, match="inside the store"):
        local_key_config(FarmConfig.defaults(signing_key=str(inside)), tmp_path / "store")
    kms = FarmConfig.defaults(kms_key_id="alias/x")
    assert local_key_config(kms, tmp_path / "store") == (kms, None)
