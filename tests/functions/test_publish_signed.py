"""What the publish side writes and signs (issue 15): per build sbom.cdx.json, provenance.json,
SHA256SUMS and their signatures; at the root versions.json.sig and keys/. Checked by openssl
itself and by `buildfarm verify`, untouched, tampered with, and published twice."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from openssl_check import openssl_verifies

from buildfarm.attest.signing import KeyFileSigner, fingerprint, init_key, verify_signature
from buildfarm.attest.store_keys import ensure_catalog_signed
from buildfarm.cli import main
from buildfarm.models import Attestations
from buildfarm.plan import PlanItem, plan
from buildfarm.publish import publish, publish_cell
from buildfarm.store import LocalStore

from .conftest import NOW, fake_build, read_json, write_releases

REQUEST = {"versions": ["3.13.5"], "platforms": ["debian-12"], "arches": ["x86_64"]}
PUBLISHED = ("sbom.cdx.json", "provenance.json", "SHA256SUMS", "SHA256SUMS.sig", "provenance.json.sig")
# What the builder's collector records (builder_image/sbom_facts), in manifest.json.
SBOM_FACTS = {
    "distro_id": "debian",
    "distro_version": "12",
    "bundled": [
        {"name": "expat", "version": "2.7.1", "path": "Modules/expat", "version_source": "expat.h"},
    ],
    "linked": [
        {
            "kind": "deb",
            "name": "libssl3",
            "version": "3.0.16-1~deb12u1",
            "arch": "amd64",
            "sonames": ["libssl.so.3", "libcrypto.so.3"],
        }
    ],
    "toolchain": [{"role": "compiler", "name": "gcc", "version": "12.2.0"}],
}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def key_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("keys")
    for name in ("farm", "next"):
        init_key(directory / f"{name}.pem")
    return {name: directory / f"{name}.pem" for name in ("farm", "next")}


@pytest.fixture
def signer(key_files: dict[str, Path]) -> KeyFileSigner:
    return KeyFileSigner(key_files["farm"])


def build_and_plan(
    store: LocalStore, config, attestations: dict[str, str] | None = None
) -> tuple[PlanItem, dict]:
    """One planned cell, built as the builder leaves it (artifacts, build.log, manifest.json,
    which lists the attestations: the contract's names unless given), and the plan's summary
    (what Finalize is given)."""
    write_releases(store, ["3.13.5"])
    the_plan = plan(REQUEST, store, config, "exec-1", NOW)
    (item,) = the_plan.items
    manifest = fake_build(store, item.spec)
    # The builder's fuller manifest: SBOM facts, the source signature's status, the image.
    manifest.update(
        sbom_facts=SBOM_FACTS,
        source_signature={"status": "verified", "fingerprint": "7169605F62C751356D054A26A821E680E5FA6305"},
        builder_image="ghcr.io/example/builder@sha256:" + "c" * 64,
        driver_version="1",
        attestations=attestations or Attestations().model_dump(),
    )
    manifest_key = f"{item.spec.artifact_dir}/manifest.json"
    (Path(store.location) / manifest_key).write_text(json.dumps(manifest, indent=2) + "\n")
    return item, the_plan.summary


@pytest.fixture
def published(local_store: LocalStore, config, signer: KeyFileSigner) -> tuple[LocalStore, PlanItem]:
    """A store with one build published (PublishCell, then Finalize) and signed with the farm key."""
    item, summary = build_and_plan(local_store, config)
    assert publish_cell(item, local_store, NOW, signer=signer).status == "published"
    assert publish(summary, local_store, config, NOW, signer=signer).published == [item.cell]
    return local_store, item


def openssl_verifies_files(public_key: Path, data_file: Path) -> bool:
    """openssl_verifies() of a file beside its .sig, with the key file."""
    signature = data_file.with_name(f"{data_file.name}.sig")
    return openssl_verifies(public_key.read_bytes(), data_file.read_bytes(), signature.read_bytes())


def verify(*argv: str, capsys) -> tuple[int, list[str]]:
    status = main(["verify", *argv])
    return status, capsys.readouterr().out.splitlines()


def test_a_published_build_has_its_five_files_and_openssl_verifies_them(published) -> None:
    store, item = published
    root = Path(store.location)
    build = root / item.spec.artifact_dir
    assert {path.name for path in build.iterdir()} >= set(PUBLISHED)
    artifacts = sorted(
        a["file"] for a in read_json(store, f"{item.spec.artifact_dir}/manifest.json")["artifacts"]
    )
    listed = [line.split("  ") for line in (build / "SHA256SUMS").read_text().splitlines()]
    names = sorted([*artifacts, "manifest.json", "provenance.json", "sbom.cdx.json"])
    assert [name for _, name in listed] == names  # sorted, and nothing else
    # manifest.json lists them (issue 15: "list it in manifest.json and SHA256SUMS").
    manifest = read_json(store, f"{item.spec.artifact_dir}/manifest.json")
    assert sorted(manifest["attestations"].values()) == sorted(PUBLISHED)
    assert manifest["attestations"]["sbom"] == "sbom.cdx.json"
    assert all(digest == sha256((build / name).read_bytes()) for digest, name in listed)

    keys = read_json(store, "keys/keys.json")
    (entry,) = keys["keys"]
    public_key = root / entry["file"]
    assert keys["schema_version"] == 1 and keys["current"] == entry["fingerprint"]
    assert entry["file"] == f"keys/{entry['fingerprint'].removeprefix('SHA256:')}.pub"
    assert fingerprint(public_key.read_bytes()) == entry["fingerprint"]
    for signed in (build / "SHA256SUMS", build / "provenance.json", root / "versions.json"):
        assert openssl_verifies_files(public_key, signed), signed


def test_the_provenance_states_the_build(published) -> None:
    store, item = published
    statement = read_json(store, f"{item.spec.artifact_dir}/provenance.json")
    manifest_data = store.read(f"{item.spec.artifact_dir}/manifest.json")[0]
    subjects = {s["name"]: s["digest"]["sha256"] for s in statement["subject"]}
    manifest = json.loads(manifest_data)
    assert subjects == {
        "manifest.json": sha256(manifest_data),
        **{a["file"]: a["sha256"] for a in manifest["artifacts"]},
    }
    definition = statement["predicate"]["buildDefinition"]
    assert definition["externalParameters"] == item.spec.model_dump(mode="json")
    source, image = definition["resolvedDependencies"]
    assert source["digest"] == {"sha256": item.spec.source.sha256}
    assert source["annotations"] == {"signature": "verified by 7169605F62C751356D054A26A821E680E5FA6305"}
    assert image["digest"] == {"sha256": "c" * 64}
    run = statement["predicate"]["runDetails"]
    # The times are the manifest's (built_at, less the phases' timings), not the publisher's.
    assert run["metadata"] == {
        "invocationId": "exec-1",
        "startedOn": "2025-06-11T11:58:59Z",
        "finishedOn": "2025-06-11T12:00:00Z",
    }
    sbom = read_json(store, f"{item.spec.artifact_dir}/sbom.cdx.json")
    names = {c["name"] for c in sbom["components"]}
    assert {"cpython", "libssl3", "gcc"} <= names


def test_buildfarm_verify_accepts_the_store_and_a_build_by_file_or_fingerprint(published, signer, capsys):
    store, item = published
    root = Path(store.location)
    (root.parent / "farm.pub").write_bytes(signer.public_key_pem())
    pinned = fingerprint(signer.public_key_pem())
    for location in (str(root), str(root / item.spec.artifact_dir)):
        for key in (str(root.parent / "farm.pub"), pinned):
            status, lines = verify(location, "--pubkey", key, capsys=capsys)
            assert (status, lines) == (0, [f"{location}: OK"]), (location, key)


TAMPERING = {
    "artifact": (
        "{build}/python-3.13.5-debian-12-x86_64.tar.gz",
        "{build}/python-3.13.5-debian-12-x86_64.tar.gz: sha256",
    ),
    "SHA256SUMS": ("{build}/SHA256SUMS", "{build}/SHA256SUMS.sig: not a signature of SHA256SUMS"),
    "SHA256SUMS.sig": ("{build}/SHA256SUMS.sig", "{build}/SHA256SUMS.sig: not a signature of SHA256SUMS"),
    "provenance.json.sig": ("{build}/provenance.json.sig", "{build}/provenance.json.sig: not a signature"),
    "versions.json": ("versions.json", "versions.json.sig: not a signature of versions.json"),
    "versions.json.sig": ("versions.json.sig", "versions.json.sig: not a signature of versions.json"),
}


@pytest.mark.parametrize("what", sorted(TAMPERING))
def test_tampering_fails_buildfarm_verify_with_the_file_named(what, published, signer, capsys) -> None:
    store, item = published
    root = Path(store.location)
    target, expected = (text.format(build=item.spec.artifact_dir) for text in TAMPERING[what])
    data = bytearray((root / target).read_bytes())
    data[-2] ^= 0x01  # in a JSON or text file, the character before the final newline
    (root / target).write_bytes(bytes(data))
    pinned = fingerprint(signer.public_key_pem())
    status, lines = verify(str(root), "--pubkey", pinned, capsys=capsys)
    assert status == 1
    assert any(line.startswith(expected) for line in lines), lines


def test_the_publish_side_writes_the_names_the_manifest_lists(local_store, config, signer, capsys) -> None:
    names = {
        **Attestations().model_dump(),
        "checksums_signature": "SHA256SUMS.p256.sig",
        "provenance_signature": "provenance.p256.sig",
    }
    item, _ = build_and_plan(local_store, config, names)
    assert publish_cell(item, local_store, NOW, signer=signer).status == "published"
    build = Path(local_store.location) / item.spec.artifact_dir
    assert {path.name for path in build.iterdir()} >= set(names.values())
    assert not (build / "SHA256SUMS.sig").exists() and not (build / "provenance.json.sig").exists()
    public_key = build.parent / "farm.pub"
    public_key.write_bytes(signer.public_key_pem())
    status, lines = verify(str(build), "--pubkey", str(public_key), capsys=capsys)
    assert (status, lines) == (0, [f"{build}: OK"])
    (build / "provenance.p256.sig").unlink()
    status, lines = verify(str(build), "--pubkey", str(public_key), capsys=capsys)
    assert (status, lines) == (1, ["provenance.p256.sig: missing"])


def test_a_manifest_listing_a_builders_name_is_not_published(local_store, config, signer) -> None:
    item, _ = build_and_plan(local_store, config, {**Attestations().model_dump(), "sbom": "sbom.json"})
    outcome = publish_cell(item, local_store, NOW, signer=signer)
    assert outcome.status == "failed"
    assert (
        "manifest.json invalid: attestations: Value error, sbom.json: not a name only the publish side writes"
        in (outcome.reason)
    )
    assert not local_store.exists(f"{item.spec.artifact_dir}/sbom.json")


def test_a_wrong_pinned_key_is_one_line(published, key_files, capsys) -> None:
    store, _ = published
    stranger = fingerprint(KeyFileSigner(key_files["next"]).public_key_pem())
    assert main(["verify", store.location, "--pubkey", stranger]) == 2
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith(f"--pubkey {stranger}: no keys/{stranger[7:]}.pub in the store (pass the key's file)")
    )
    (Path(store.location) / "stranger.pub").write_bytes(KeyFileSigner(key_files["next"]).public_key_pem())
    status, lines = verify(
        store.location, "--pubkey", str(Path(store.location) / "stranger.pub"), capsys=capsys
    )
    assert status == 1 and lines[0].startswith(
        "versions.json.sig: not a signature of versions.json by any given key"
    )


def test_publishing_again_keeps_every_file(published, config, signer) -> None:
    """A dead publisher run again: the same decision, no file rewritten (new ECDSA signatures
    would differ; the ones there verify, so they stay)."""
    store, item = published
    build = Path(store.location) / item.spec.artifact_dir
    before = {name: (build / name).read_bytes() for name in PUBLISHED}
    assert publish_cell(item, store, NOW, signer=signer).status == "published"
    assert {name: (build / name).read_bytes() for name in PUBLISHED} == before


def test_a_file_already_there_that_differs_fails_the_cell(local_store, config, signer) -> None:
    item, _ = build_and_plan(local_store, config)
    local_store.put(f"{item.spec.artifact_dir}/SHA256SUMS", b"0  python.tar.gz\n")  # an old builder's
    outcome = publish_cell(item, local_store, NOW, signer=signer)
    assert outcome.status == "failed"
    assert (
        outcome.reason == f"attestation: SHA256SUMS is already in {item.spec.artifact_dir} with other content"
    )
    assert (
        not local_store.exists("versions.json")
        or "3.13.5" not in read_json(local_store, "versions.json")["builds"]
    )


def test_a_signature_already_there_by_an_unlisted_key_fails_the_cell(local_store, config, key_files) -> None:
    item, _ = build_and_plan(local_store, config)
    stranger = KeyFileSigner(key_files["next"])
    local_store.put(f"{item.spec.artifact_dir}/SHA256SUMS.sig", stranger.sign(b"whatever"))
    outcome = publish_cell(item, local_store, NOW, signer=KeyFileSigner(key_files["farm"]))
    assert (outcome.status, outcome.reason) == (
        "failed",
        "attestation: SHA256SUMS.sig is already there and is not a signature of it by a listed key",
    )


def test_an_unsigned_publish_is_signed_by_a_later_run(local_store, config, signer) -> None:
    """No signer (a store published without a key): attested but unsigned, although the
    environment names a key (tests/conftest.py: only the configuration is read, by the caller);
    a rerun with a key signs."""
    item, summary = build_and_plan(local_store, config)
    assert publish_cell(item, local_store, NOW, signer=None).status == "published"
    assert local_store.exists(f"{item.spec.artifact_dir}/SHA256SUMS")
    assert not local_store.exists(f"{item.spec.artifact_dir}/SHA256SUMS.sig")
    assert not local_store.exists("versions.json.sig")
    assert publish_cell(item, local_store, NOW, signer=signer).status == "published"
    assert local_store.exists(f"{item.spec.artifact_dir}/SHA256SUMS.sig")
    publish(summary, local_store, config, NOW, signer=signer)  # Finalize signs the catalog
    assert local_store.exists("versions.json.sig") and local_store.exists("keys/keys.json")


def test_a_rotated_key_keeps_old_builds_verifiable(published, key_files, config, capsys) -> None:
    store, _ = published
    old, new = (fingerprint(KeyFileSigner(key_files[n]).public_key_pem()) for n in ("farm", "next"))
    ensure_catalog_signed(store, KeyFileSigner(key_files["next"]))
    keys = read_json(store, "keys/keys.json")
    assert [k["fingerprint"] for k in keys["keys"]] == [old, new] and keys["current"] == new
    # versions.json.sig by the old key still verifies (with a listed key): kept.
    status, lines = verify(store.location, "--pubkey", old, capsys=capsys)
    assert (status, lines) == (0, [f"{store.location}: OK"])


def test_finalize_signs_versions_json_again_when_publishers_crossed(published, signer) -> None:
    """Two publishers' writes crossed: versions.json.sig is of an older versions.json."""
    store, _ = published
    store.put("versions.json.sig", signer.sign(b"an older versions.json\n"))
    assert ensure_catalog_signed(store, signer) == ["versions.json.sig"]
    root = Path(store.location)
    assert openssl_verifies_files(
        root / read_json(store, "keys/keys.json")["keys"][0]["file"], root / "versions.json"
    )
    assert ensure_catalog_signed(store, signer) == []  # a good signature is left alone


def test_reindex_signs_the_versions_json_it_rewrites(published, key_files, monkeypatch, capsys) -> None:
    """`buildfarm reindex` signs with the configured key (BUILDFARM_SIGNING_KEY)."""
    store, _ = published
    monkeypatch.setenv("BUILDFARM_SIGNING_KEY", str(key_files["farm"]))
    document = read_json(store, "versions.json")
    store.put_json("versions.json", {**document, "python_versions": []})  # its derived view is off
    assert main(["reindex", "--store", store.location]) == 0
    assert "versions.json" in capsys.readouterr().out
    data, signature = store.read("versions.json")[0], store.read("versions.json.sig")[0]
    assert verify_signature(data, signature, [KeyFileSigner(key_files["farm"]).public_key_pem()])
