"""Publish one runtime build a farm claimed: verify it (buildfarm.runtimes.verify), write its
SHA256SUMS and signature (buildfarm.attest's sign_build_dir, create-only, under the names its
manifest.json's "attestations" lists), merge it into versions.json's `runtimes` (the
conditional write Python cells use), release its claim. The runtime twin of
buildfarm.publish.publish_cell; idempotent (a second call decides the same: files already there
with the same content are kept, the merge keeps the higher build, a released claim stays
released)."""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import datetime

from buildfarm.attest.build_files import AttestationError, manifest_attestations, sign_build_dir
from buildfarm.attest.signing import Signer
from buildfarm.attest.store_keys import listed_public_keys
from buildfarm.catalog.versions_json import RuntimeCatalogCell, RuntimeCell, update_runtimes
from buildfarm.claims import release_markers
from buildfarm.publish import CellOutcome  # a runtime cell is decided as a Python cell is
from buildfarm.releases import iso
from buildfarm.runtimes.keys import (
    MANIFEST_FILE,
    runtime_artifact_dir,
    runtime_cell_name,
    runtime_claim_key,
    runtime_manifest_key,
)
from buildfarm.runtimes.verify import verify_runtime
from buildfarm.store import Store, StoreError
from buildfarm.verify import short

log = logging.getLogger(__name__)


def sign_runtime(
    store: Store, directory: str, entry: RuntimeCatalogCell, signer: Signer | None
) -> RuntimeCatalogCell | str:
    """SHA256SUMS over the verified artifacts and manifest.json (hashed as read here), and
    SHA256SUMS.sig, under the names manifest.json lists; the entry recording them when done,
    else why the build cannot be published."""

    def known_keys() -> list[bytes]:
        current = [signer.public_key_pem()] if signer is not None else []
        return current + listed_public_keys(store)

    files = {artifact.key.rsplit("/", 1)[-1]: artifact.sha256 for artifact in entry.artifacts}
    try:
        manifest_data, _ = store.read(runtime_manifest_key(directory))
        manifest = json.loads(manifest_data)  # verify_runtime parsed it: a dict
        names = manifest_attestations(manifest, files)
        if "attestations" in manifest and (names.sbom or names.provenance):
            raise AttestationError(
                f"{MANIFEST_FILE}: attestations: a runtime build has no SBOM or provenance"
            )
        files[MANIFEST_FILE] = hashlib.sha256(manifest_data).hexdigest()
        written = sign_build_dir(store, directory, files, signer, known_keys=known_keys, names=names)
    except (AttestationError, StoreError, ValueError) as error:
        return short(f"attestation: {error}")
    return entry.model_copy(update={"attestations": written})


def publish_runtime(
    store: Store,
    cell: RuntimeCell,
    build: int,
    execution_id: str,
    now: datetime,
    failure: str = "",
    *,
    signer: Signer | None,
    planned_lock: str | None = None,
) -> CellOutcome:
    """Decide a claimed runtime build: published if it verifies (signed by signer; None:
    unsigned, see attest.farm_signer), else failed with `failure` (why the build failed, when it
    did) or the verification's reason. planned_lock: the sha256 of the lock the plan was made
    for, which the manifest must record, as it must the id of the execution that claimed the
    build (a runtime build is published only if it was planned). The claim is released either
    way (its marker keeps the build number, so a failed number is not reused)."""
    name = runtime_cell_name(*cell)
    entry, reason = (
        (None, failure) if failure else verify_runtime(store, cell, build, now, planned_lock, execution_id)
    )
    if entry is not None:
        signed = sign_runtime(store, runtime_artifact_dir(*cell, build), entry, signer)
        entry, reason = (None, signed) if isinstance(signed, str) else (signed, "")
    if entry is not None:
        update_runtimes(store, {cell: entry}, now, signer=signer)
        outcome = CellOutcome(cell=name, build=build, status="published", decided=iso(now))
    else:
        log.warning("runtime %s build %d not published: %s", name, build, reason)
        outcome = CellOutcome(cell=name, build=build, status="failed", reason=reason, decided=iso(now))
    release_markers(store, [runtime_claim_key(*cell)], execution_id=execution_id, now=now)
    return outcome
