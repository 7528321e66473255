"""What the publish side writes into a build directory once the build verified (COMMON
contract, DESIGN "Store layout"), all create-only, under the names manifest.json's
"attestations" lists (buildfarm.models.Attestations; these defaults for a manifest without it):

    sbom.cdx.json        CycloneDX, from manifest.json's sbom_facts and the planned spec
    provenance.json      in-toto / SLSA v1, from the planned spec and manifest.json
    SHA256SUMS           the artifacts, manifest.json, sbom.cdx.json and provenance.json
    SHA256SUMS.sig       \
    provenance.json.sig  / DER ECDSA P-256 over SHA-256 of the file (openssl dgst -verify)

The checksums of the artifacts are the ones the publish side verified (buildfarm.verify), not
the builder's word. Publishing may run twice (a dead publisher is run again): a file already
there with the same bytes is kept, a signature already there that verifies with a listed key
is kept; anything else there is an AttestationError naming the file.

sign_build_dir is the part any build directory needs (runtimes too): documents, SHA256SUMS and
the signatures; attest_build adds the SBOM and provenance of a CPython build. A runtime build's
manifest lists SHA256SUMS and SHA256SUMS.sig only (Attestations.checksums_only).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import TypeAdapter, ValidationError

from buildfarm.errors import BuildfarmError, first_error
from buildfarm.layout import MANIFEST_FILE, PROVENANCE_FILE, SBOM_FILE, SUMS_FILE
from buildfarm.models import Attestations, Timings, parse_utc_time
from buildfarm.store import Store, StoreConflict, StoreNotFound

from .provenance import Dependency, ProvenanceFacts, Subject, render_statement
from .sbom import SbomFacts, SourceFacts, make_sbom
from .signing import Signer, verify_signature

log = logging.getLogger(__name__)

BUILDER_ID = "urn:python-build-farm:publisher"
"""runDetails.builder.id: the farm's control plane, which writes (and signs) the provenance."""
SIGNATURE_TYPE = "application/octet-stream"
SUMS_TYPE = "text/plain; charset=utf-8"
SBOM_TYPE = "application/vnd.cyclonedx+json"
JSON_TYPE = "application/json"
CONTENT_TYPES = {SUMS_FILE: SUMS_TYPE, SBOM_FILE: SBOM_TYPE, PROVENANCE_FILE: JSON_TYPE}
"""Content types by default name (a name the caller gives no type for)."""


class AttestationError(BuildfarmError):
    """A build directory that cannot be attested as it is (the message names the file)."""


def sums_text(files: Mapping[str, str]) -> bytes:
    """sha256sum's format, sorted by name: "<sha256>  <name>\\n" per file."""
    return "".join(f"{files[name]}  {name}\n" for name in sorted(files)).encode()


def put_create_only(store: Store, key: str, data: bytes, content_type: str | None = None) -> None:
    """Create key with data; an object already there with these bytes is kept."""
    name = key.rsplit("/", 1)[-1]
    try:
        store.put(key, data, if_none_match=True, content_type=content_type or CONTENT_TYPES.get(name))
        return
    except StoreConflict:
        pass
    existing, _ = store.read(key)
    if existing != data:
        raise AttestationError(f"{name} is already in {key.rsplit('/', 1)[0]} with other content")


def put_signature(
    store: Store, signature_key: str, data: bytes, signer: Signer, known_keys: Callable[[], list[bytes]]
) -> None:
    """Create signature_key, the signature of data; one already there is kept if it verifies
    with a known key (ECDSA signatures differ each time: a rerun cannot compare bytes)."""
    name = signature_key.rsplit("/", 1)[-1]
    try:
        store.put(signature_key, signer.sign(data), if_none_match=True, content_type=SIGNATURE_TYPE)
        return
    except StoreConflict:
        pass
    existing, _ = store.read(signature_key)
    if verify_signature(data, existing, known_keys()) is None:
        raise AttestationError(f"{name} is already there and is not a signature of it by a listed key")


def sign_build_dir(
    store: Store,
    artifact_dir: str,
    files: Mapping[str, str],
    signer: Signer | None,
    *,
    documents: Mapping[str, bytes] | None = None,
    known_keys: Callable[[], list[bytes]] | None = None,
    names: Attestations | None = None,
) -> dict[str, str]:
    """Write documents (file name -> bytes: the SBOM, the provenance) into artifact_dir, then
    the checksums over files (name -> verified sha256) and the documents, then their signature
    and the provenance's (when it is a document), create-only, under names (a manifest's
    "attestations"; default: the contract's names). signer None: everything but the
    signatures, and the build stays unsigned (nothing signs a published build later: see
    attest.farm_signer). known_keys: the public keys an existing
    signature may be by (default: the signer's). AttestationError names a file already there
    that differs. Returns what is now in artifact_dir by role (Attestations' roles): the
    catalog entry's record of it."""
    names = names or Attestations()
    documents = dict(documents or {})
    listed = dict(files)
    for name, data in sorted(documents.items()):
        content_type = SBOM_TYPE if name == names.sbom else JSON_TYPE
        put_create_only(store, f"{artifact_dir}/{name}", data, content_type)
        listed[name] = hashlib.sha256(data).hexdigest()
    sums = sums_text(listed)
    put_create_only(store, f"{artifact_dir}/{names.checksums}", sums, SUMS_TYPE)
    if signer is None:
        # SHA256SUMS always, the provenance when this build has one: the files left unsigned.
        unsigned = " and ".join([names.checksums, *(n for n in [names.provenance] if n in documents)])
        log.warning("%s: no signing key configured: %s unsigned", artifact_dir, unsigned)
        return _written(names, documents, signed=False)
    keys = known_keys or (lambda: [signer.public_key_pem()])
    put_signature(store, f"{artifact_dir}/{names.checksums_signature}", sums, signer, keys)
    if names.provenance in documents and names.provenance_signature is not None:
        provenance_signature = f"{artifact_dir}/{names.provenance_signature}"
        put_signature(store, provenance_signature, documents[names.provenance], signer, keys)
    return _written(names, documents, signed=True)


def _written(names: Attestations, documents: Mapping[str, bytes], *, signed: bool) -> dict[str, str]:
    """role -> file name of what sign_build_dir wrote: the checksums, the documents, and the
    signatures when it signed (the provenance's only with a provenance)."""
    written = {"checksums": names.checksums}
    written |= {
        role: name
        for role, name in (("sbom", names.sbom), ("provenance", names.provenance))
        if name in documents
    }
    if signed:
        written["checksums_signature"] = names.checksums_signature
        if names.provenance in documents and names.provenance_signature is not None:
            written["provenance_signature"] = names.provenance_signature
    return written


# -- a CPython build's SBOM and provenance -----------------------------------------------------


def _timestamp(text: Any, what: str) -> datetime.datetime:
    if not isinstance(text, str):
        raise AttestationError(f"{MANIFEST_FILE}: no {what}")
    try:
        return parse_utc_time(text)
    except ValueError as error:
        raise AttestationError(f"{MANIFEST_FILE}: {what} {error}") from None


_TIMINGS = TypeAdapter(Timings)


def build_times(manifest: Mapping[str, Any]) -> tuple[datetime.datetime, datetime.datetime]:
    """(started, finished): built_at ends the phases the timings measure (upload follows).
    The manifest model's rules (models.Manifest), so that the subtraction cannot fail."""
    finished = _timestamp(manifest.get("built_at"), "built_at")
    try:
        timings = _TIMINGS.validate_python(manifest.get("timings") or {})
    except ValidationError as error:
        raise AttestationError(f"{MANIFEST_FILE}: {first_error(error, under='timings')}") from None
    return finished - datetime.timedelta(seconds=sum(timings.values())), finished


def signature_status(record: Any) -> str:
    """manifest.json's source_signature as the SBOM and provenance state it."""
    if not isinstance(record, dict) or not record.get("status"):
        return "not checked"
    if record["status"] == "verified" and record.get("fingerprint"):
        return f"verified by {record['fingerprint']}"
    return str(record["status"])


def sbom_document(manifest: Mapping[str, Any], spec: Mapping[str, Any]) -> bytes:
    """sbom.cdx.json of a build, from the planned spec and manifest.json's sbom_facts."""
    facts = manifest.get("sbom_facts")
    if not isinstance(facts, dict) or not facts:
        raise AttestationError(f"{MANIFEST_FILE}: no sbom_facts (a builder older than the SBOM?)")
    source = spec["source"]
    try:
        sbom = SbomFacts(
            python_version=spec["version"],
            platform=spec["platform"],
            arch=spec["arch"],
            build=spec["build"],
            distro_id=facts.get("distro_id"),
            distro_version=facts.get("distro_version"),
            source=SourceFacts(
                url=source["url"],
                sha256=source["sha256"],
                signature=signature_status(manifest.get("source_signature")),
            ),
            bundled=facts.get("bundled") or (),
            linked=facts.get("linked") or (),
            toolchain=facts.get("toolchain") or (),
            created=build_times(manifest)[1],
        )
    except ValidationError as error:
        raise AttestationError(f"{MANIFEST_FILE}: sbom_facts: {first_error(error)}") from None
    return make_sbom(sbom).encode()


def _image(reference: Any) -> Dependency:
    """The builder image as a resolved dependency, with its digest when the reference pins one."""
    uri = reference if isinstance(reference, str) and reference else "unknown"
    digest = uri.rsplit("@sha256:", 1)[1] if "@sha256:" in uri else None
    if digest is not None and (len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest)):
        digest = None
    return Dependency(uri=uri, name="builder-image", sha256=digest)


def provenance_document(
    manifest: Mapping[str, Any], spec: Mapping[str, Any], subjects: Mapping[str, str]
) -> bytes:
    """provenance.json: the planned spec, the source, the builder image, the execution, the
    times from manifest.json, and the subjects (name -> verified sha256)."""
    started, finished = build_times(manifest)
    source = spec["source"]
    internal = {key: manifest[key] for key in ("driver_version", "driver_python") if manifest.get(key)}
    signature = signature_status(manifest.get("source_signature"))
    try:
        facts = ProvenanceFacts(
            subjects=tuple(Subject(name=name, sha256=sha256) for name, sha256 in sorted(subjects.items())),
            spec=dict(spec),
            internal=internal,
            source=Dependency(
                uri=source["url"],
                name=source["url"].split("?", 1)[0].rsplit("/", 1)[-1],
                sha256=source["sha256"],
                annotations={"signature": signature},
            ),
            builder_image=_image(manifest.get("builder_image")),
            builder_id=BUILDER_ID,
            builder_version={"driver": str(internal["driver_version"])}
            if "driver_version" in internal
            else {},
            invocation_id=spec["execution_id"],
            started_on=started,
            finished_on=finished,
        )
    except ValidationError as error:
        # models.Manifest holds the names to the subjects' rule; should anything still fail
        # here, its cell fails with the reason rather than the publisher with an exception.
        raise AttestationError(f"{MANIFEST_FILE}: {first_error(error, under='provenance')}") from None
    return render_statement(facts).encode()


def manifest_attestations(manifest: Mapping[str, Any], artifacts: Mapping[str, str]) -> Attestations:
    """The names manifest.json's "attestations" lists (Attestations.listed; the defaults when it
    has none: a builder older than the field); AttestationError for a bad list, or a name an
    artifact has."""
    try:
        names = (
            Attestations.listed(manifest["attestations"]) if "attestations" in manifest else Attestations()
        )
    except ValidationError as error:
        raise AttestationError(f"{MANIFEST_FILE}: {first_error(error, under='attestations')}") from None
    both = sorted(set(names.names()) & {*artifacts, MANIFEST_FILE})
    if both:
        raise AttestationError(f"{MANIFEST_FILE}: attestations: {', '.join(both)} is also an artifact")
    return names


def attest_build(
    store: Store,
    spec: Mapping[str, Any],
    artifacts: Mapping[str, str],
    signer: Signer | None,
    known_keys: Callable[[], list[bytes]] | None = None,
) -> dict[str, str]:
    """Write a verified CPython build's SBOM, provenance, SHA256SUMS and signatures, under the
    names its manifest.json lists; returns them by role (sign_build_dir).

    spec: the planned spec (JSON form); artifacts: file name -> the sha256 the publish side
    verified. manifest.json is read here, once, and hashed as read."""
    artifact_dir = spec["artifact_dir"]
    try:
        manifest_data, _ = store.read(f"{artifact_dir}/{MANIFEST_FILE}")
    except StoreNotFound:
        raise AttestationError(f"{MANIFEST_FILE} is missing") from None
    manifest = json.loads(manifest_data)  # verify_cell parsed these very bytes
    names = manifest_attestations(manifest, artifacts)
    if names.sbom is None or names.provenance is None or names.provenance_signature is None:
        left_out = ", ".join(role for role in Attestations.OPTIONAL_ROLES if getattr(names, role) is None)
        raise AttestationError(f"{MANIFEST_FILE}: attestations: no {left_out} (a CPython build has them)")
    files = {**artifacts, MANIFEST_FILE: hashlib.sha256(manifest_data).hexdigest()}
    documents = {
        names.sbom: sbom_document(manifest, spec),
        names.provenance: provenance_document(manifest, spec, files),
    }
    return sign_build_dir(
        store, artifact_dir, files, signer, documents=documents, known_keys=known_keys, names=names
    )
