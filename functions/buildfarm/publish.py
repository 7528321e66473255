"""The publisher, per cell and per run (DESIGN "Workflow").

publish_cell decides one planned cell as soon as its build has finished: a build that
verifies (buildfarm.verify) is merged into versions.json (conditional write: concurrent cell
publishers never lose an entry); anything else is failed, with the reason (the builder's
failure.json, else what Batch said, else "no manifest"). Either way the cell's claim is
released and, last, its outcome is recorded under plans/<execution>/outcomes/, so a
publisher that dies half-way is simply run again.

publish (the workflow's Finalize, and recovery of a dead run) decides every planned cell that
has no outcome yet the same way, regenerates the derived files once (uv metadata, index.html,
install.sh), and closes the run (its marker under runs/).
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from buildfarm import clock
from buildfarm.attest.build_files import AttestationError, attest_build
from buildfarm.attest.signing import Signer
from buildfarm.attest.store_keys import listed_public_keys
from buildfarm.batch_errors import batch_job_line, describe_batch_error
from buildfarm.catalog import CatalogCell, Cell, parse_cell, regenerate_derived, update_versions
from buildfarm.catalog.derived import refresh_if_outdated, store_public_url
from buildfarm.catalog.versions_json import record_failures
from buildfarm.claims import release_claims
from buildfarm.config import FarmConfig
from buildfarm.layout import failure_key, outcome_key
from buildfarm.plan_items import PlanItem, close_run, read_plan_items, recorded_outcomes
from buildfarm.platforms import Registry, load_registry
from buildfarm.releases import iso
from buildfarm.store import Store, StoreError, StoreNotFound
from buildfarm.verify import short, verify_cell

log = logging.getLogger(__name__)

PUBLISH_THREADS = 8


class BatchOutcome(BaseModel):
    """What the runner (Batch, or a local runner) said about the cell's job."""

    model_config = ConfigDict(extra="ignore")
    status: Literal["succeeded", "failed"]
    job_id: str | None = None
    error: str | None = None


class CellOutcome(BaseModel):
    """A decided cell: what PublishCell returns and records under plans/<execution>/outcomes/."""

    cell: str
    build: int
    status: Literal["published", "failed"]
    reason: str = ""
    decided: str = ""


class FailedCell(BaseModel):
    cell: str
    reason: str


class PublishResult(BaseModel):
    published: list[str]
    failed: list[FailedCell]
    counts: dict[str, int]

    def as_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def _failure_reason(store: Store, item: PlanItem, batch: BatchOutcome | None) -> str:
    """Why a cell without a good manifest failed: the builder's failure.json says it best; in
    the cloud, Batch's account of the job follows it (the job and the log stream of its last
    attempt: a record written by an attempt Spot reclaimed says "interrupted", and the next
    attempt of the same build cannot replace it)."""
    spec = item.spec
    try:
        raw, _ = store.read_json(failure_key(spec.version, spec.platform, spec.arch, spec.build))
    except StoreNotFound:
        raw = None
    except StoreError as error:
        return short(f"no manifest; failure.json unreadable: {error}")
    if isinstance(raw, dict):
        recorded = next((raw[field] for field in ("reason", "error", "message") if raw.get(field)), None)
        phase = f"{raw['phase']}: " if raw.get("phase") and recorded else ""
        job = batch_job_line(batch.error) if batch is not None and batch.status == "failed" else None
        return short(phase + str(recorded or json.dumps(raw)) + (f"; {job}" if job else ""))
    if batch is not None and batch.status == "failed":
        return short(describe_batch_error(batch.error) if batch.error else "build failed (no error given)")
    if batch is not None:
        return "no manifest (the build reported success)"
    return "no manifest"


def attest_cell(store: Store, item: PlanItem, entry: CatalogCell, signer: Signer | None) -> CatalogCell | str:
    """Write a verified build's SBOM, provenance, SHA256SUMS and signatures (with the sha256s
    verify_cell checked); the entry recording them when done, else why the cell fails."""

    def known_keys() -> list[bytes]:
        current = [signer.public_key_pem()] if signer is not None else []
        return current + listed_public_keys(store)

    artifacts = {artifact.key.rsplit("/", 1)[-1]: artifact.sha256 for artifact in entry.artifacts}
    try:
        written = attest_build(store, item.spec.model_dump(mode="json"), artifacts, signer, known_keys)
    except AttestationError as error:
        return short(f"attestation: {error}")
    except (ValueError, OverflowError) as error:
        # A manifest the model's checks missed: its cell fails, the other cells go on (an
        # exception here would stop Finalize, and recovery would retry the run forever).
        log.exception("cell %s: attesting failed", item.cell)
        return short(f"attestation: {type(error).__name__}: {error}")
    return entry.model_copy(update={"attestations": written})


def publish_cell(
    item: PlanItem,
    store: Store,
    now: datetime | None = None,
    batch: BatchOutcome | None = None,
    *,
    signer: Signer | None,
) -> CellOutcome:
    """Decide one planned cell from the store: if it verifies, write its attestations (signed
    by signer; None: unsigned, see attest.farm_signer) and merge it into versions.json; release
    its claim, record the outcome. Idempotent: running it again decides the same."""
    now = now or clock.now()
    cell = parse_cell(item.cell)
    entry, reason = verify_cell(store, item, now)
    if entry is not None:
        attested = attest_cell(store, item, entry, signer)
        entry, reason = (None, attested) if isinstance(attested, str) else (attested, "")
    if entry is not None:
        update_versions(store, {cell: entry}, now, signer=signer)
        outcome = CellOutcome(cell=item.cell, build=item.spec.build, status="published", decided=iso(now))
    else:
        reason = reason or _failure_reason(store, item, batch)
        log.warning("cell %s build %d not published: %s", item.cell, item.spec.build, reason)
        # The status page shows the cell failing until a later build of it publishes.
        record_failures(store, {cell: (item.spec.build, reason)}, now, signer=signer)
        outcome = CellOutcome(
            cell=item.cell, build=item.spec.build, status="failed", reason=reason, decided=iso(now)
        )
    execution_id = item.spec.execution_id
    release_claims(store, [cell], execution_id=execution_id, now=now)
    # Last: an outcome on record means everything above is done.
    store.put_json(outcome_key(execution_id, outcome.status, cell), outcome.model_dump(mode="json"))
    return outcome


def _read_reason(store: Store, plan_id: str, cell: str) -> str:
    try:
        raw, _ = store.read_json(outcome_key(plan_id, "failed", parse_cell(cell)))
        return short(CellOutcome.model_validate(raw).reason or "failed")
    except (StoreError, ValueError) as error:
        return short(f"failed (outcome record unreadable: {error})")


def _decide_all(
    store: Store, plan_id: str, items: list[PlanItem], now: datetime, signer: Signer | None
) -> dict[str, CellOutcome]:
    """Every item's outcome: recorded ones read back, the others decided now."""
    recorded = recorded_outcomes(store, plan_id)

    def decide(item: PlanItem) -> CellOutcome:
        status = recorded.get(item.cell)
        if status == "published":
            return CellOutcome(cell=item.cell, build=item.spec.build, status="published")
        if status == "failed":
            reason = _read_reason(store, plan_id, item.cell)
            return CellOutcome(cell=item.cell, build=item.spec.build, status="failed", reason=reason)
        return publish_cell(item, store, now, signer=signer)

    if not items:
        return {}
    with ThreadPoolExecutor(max_workers=min(PUBLISH_THREADS, len(items))) as pool:
        return {outcome.cell: outcome for outcome in pool.map(decide, items)}


def publish(
    plan_summary: dict[str, Any],
    store: Store,
    config: FarmConfig,
    now: datetime | None = None,
    *,
    registry: Registry | None = None,
    signer: Signer | None,
) -> PublishResult:
    """Finalize a run: decide every planned cell not yet decided (publish_cell), regenerate the
    derived files once (and check versions.json's signature), close the run. Signs with signer
    (the caller's signer_for(config); None: unsigned). Returns the published and failed cells
    (with reasons)."""
    now = now or clock.now()
    registry = registry or load_registry()
    plan_counts = plan_summary.get("counts") or {}
    skipped = {
        name: int(plan_counts.get(name, 0))
        for name in ("skipped_published", "skipped_claimed", "skipped_failing", "deferred")
    }
    # A dry run, or nothing planned (a no-op writes no plan: the schedule's hourly no-op
    # costs no writes), has nothing to finalize. A no-op still repairs derived files written
    # for another base URL (a moved store): one read when they are current.
    if plan_summary.get("dry_run") or plan_counts.get("planned", 1) == 0:
        if not plan_summary.get("dry_run"):
            refresh_if_outdated(store, registry, config.enabled_platforms, config.public_base_url, now)
        return PublishResult(
            published=[], failed=[], counts={"planned": 0, "published": 0, "failed": 0, **skipped}
        )
    plan_id = str(plan_summary["plan_id"])
    items = read_plan_items(store, plan_summary["items"])
    outcomes = _decide_all(store, plan_id, items, now, signer)
    failed_cells: dict[Cell, tuple[int, str]] = {
        parse_cell(o.cell): (o.build, o.reason) for o in outcomes.values() if o.status == "failed"
    }
    if items:
        public_url = store_public_url(store, config.public_base_url)
        regenerate_derived(
            store, registry, config.enabled_platforms, public_url, now, failed_cells, signer=signer
        )
    close_run(store, plan_id)

    published = [item.cell for item in items if outcomes[item.cell].status == "published"]
    failed = [
        FailedCell(cell=item.cell, reason=outcomes[item.cell].reason)
        for item in items
        if outcomes[item.cell].status == "failed"
    ]
    log.info("publish %s: %d published, %d failed", plan_id, len(published), len(failed))
    return PublishResult(
        published=published,
        failed=failed,
        counts={"planned": len(items), "published": len(published), "failed": len(failed), **skipped},
    )
