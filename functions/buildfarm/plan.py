"""The planner: workflow input -> the cells to build, claimed, with one build spec each.

Store calls for a scheduled plan where everything is published: one read of releases.json
and one of versions.json, whatever the matrix size. Cells to build then cost one listing of
claims/ (paginated), two listings per cell (its build numbers under builds/ and logs/: a new
build is numbered past all of them) and about one or two calls per cell to claim it, plus the
plan write.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from buildfarm.catalog import Cell, cell_name, published_builds, read_versions
from buildfarm.claims import ClaimOutcome, claim_cells, release_claims
from buildfarm.config import FarmConfig
from buildfarm.models import BuildSpec, Source, artifact_dir
from buildfarm.platforms import Registry, load_registry
from buildfarm.policy import PolicyReport, select_cells
from buildfarm.releases import (
    Release,
    ReleaseLookupError,
    fetch_python_org,
    iso,
    load_releases,
    save_releases,
    source_url,
)
from buildfarm.store import Store
from buildfarm.workflow_input import InputError, WorkflowInput, parse_workflow_input

log = logging.getLogger(__name__)

PLANS_PREFIX = "plans"
_SAFE_ID = re.compile(r"[^A-Za-z0-9._-]")
MAX_ID = 80


def safe_id(text: str) -> str:
    """An id usable as one store key segment: [A-Za-z0-9._-], at most 80 characters.

    Ids that had to be changed get a short hash of the original, so distinct inputs stay distinct.
    """
    cleaned = _SAFE_ID.sub("-", text or "").strip(".-")[:MAX_ID]
    if cleaned and cleaned == text:
        return cleaned
    digest = hashlib.sha256((text or "").encode()).hexdigest()[:8]
    return f"{cleaned[: MAX_ID - 9]}-{digest}" if cleaned else f"id-{digest}"


def new_execution_id(now: datetime | None = None) -> str:
    """An execution id for local runs: local-YYYYmmddTHHMMSSZ-<random>."""
    now = now or datetime.now(UTC)
    return f"local-{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}"


def items_key(plan_id: str) -> str:
    return f"{PLANS_PREFIX}/{plan_id}/items.json"


def plan_record_key(plan_id: str) -> str:
    return f"{PLANS_PREFIX}/{plan_id}/plan.json"


class PlanItem(BaseModel):
    """One element of the plan's items.json (the Distributed Map's items)."""

    model_config = ConfigDict(extra="forbid")
    cell: str
    spec: BuildSpec
    job_definition: str
    job_queue_arch: str

    def as_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class SkippedCell(BaseModel):
    cell: str
    reason: Literal["published", "claimed"]
    build: int  # the published build, or the build the other execution claimed
    detail: str


@dataclass
class Plan:
    plan_id: str
    execution_id: str
    dry_run: bool
    force: bool
    items: list[PlanItem]
    skipped: list[SkippedCell]
    items_location: dict[str, str]
    releases_refresh: str
    matrix_size: int
    versions: list[str] = field(default_factory=list)
    policy: PolicyReport | None = None

    @property
    def counts(self) -> dict[str, int]:
        return {
            "cells": self.matrix_size,
            "planned": len(self.items),
            "skipped_published": sum(1 for s in self.skipped if s.reason == "published"),
            "skipped_claimed": sum(1 for s in self.skipped if s.reason == "claimed"),
        }

    @property
    def summary(self) -> dict[str, Any]:
        """What the Plan step returns: small whatever the matrix size (items live in the store)."""
        return {
            "plan_id": self.plan_id,
            "execution_id": self.execution_id,
            "items": self.items_location,
            "counts": self.counts,
            "dry_run": self.dry_run,
            "force": self.force,
            "releases": self.releases_refresh[:200],
        }


def _as_request(request: WorkflowInput | dict[str, Any] | None, config: FarmConfig) -> WorkflowInput:
    if isinstance(request, WorkflowInput):
        # Already validated; the enabled platforms/arches are config-specific, check them too.
        return parse_workflow_input(request.model_dump(exclude_defaults=True), config)
    return parse_workflow_input(request, config)


def make_spec(
    release: Release,
    platform: str,
    arch: str,
    build: int,
    store: Store,
    config: FarmConfig,
    execution_id: str,
) -> BuildSpec:
    """The spec one claimed cell is built from; publish later accepts only a manifest whose
    spec equals it (execution_id included, so nothing built outside this execution passes)."""
    return BuildSpec(
        version=release.version,
        platform=platform,
        arch=arch,
        build=build,
        source=Source(
            url=source_url(release.version, config.source_mirror, release.file), sha256=release.sha256
        ),
        prefix=f"/opt/python/{release.version}",
        optimization=config.optimization,
        store=store.location,
        artifact_dir=artifact_dir(release.version, platform, arch, build),
        execution_id=execution_id,
    )


def plan(
    request: WorkflowInput | dict[str, Any] | None,
    store: Store,
    config: FarmConfig,
    execution_id: str,
    now: datetime | None = None,
    *,
    registry: Registry | None = None,
    fetch_releases: Any = fetch_python_org,
) -> Plan:
    """Validate, expand under the policy (buildfarm.policy), drop published cells (unless force),
    claim the rest, write the items. Raises InputError (naming the bad value) before anything is
    written. With request.dry_run, the same plan is computed and nothing is claimed or written."""
    now = now or datetime.now(UTC)
    registry = registry or load_registry()
    validated = _as_request(request, config)
    execution_id = safe_id(execution_id)

    releases_state = load_releases(store, config, now, fetch=fetch_releases)
    try:
        selection = select_cells(validated, releases_state.catalog, config, registry, now.date())
    except ReleaseLookupError as error:
        raise InputError(f"invalid workflow input: versions: {error}") from None

    # The request is valid: from here on we may write.
    if not validated.dry_run:
        save_releases(store, releases_state)

    versions_doc, _ = read_versions(store)
    wanted, release_of, skipped = _unpublished(
        selection.matrix, published_builds(versions_doc), validated.force
    )
    outcomes: dict[Cell, ClaimOutcome] = {}
    try:
        outcomes = claim_cells(
            store,
            wanted,
            execution_id=execution_id,
            plan_id=execution_id,
            now=now,
            ttl_seconds=config.claim_ttl_seconds,
            dry_run=validated.dry_run,
        )
        items = _items(outcomes, wanted, release_of, skipped, store, config, execution_id)
        result = Plan(
            plan_id=execution_id,
            execution_id=execution_id,
            dry_run=validated.dry_run,
            force=validated.force,
            items=items,
            skipped=skipped,
            items_location=store.location_of(items_key(execution_id)),
            releases_refresh=releases_state.refresh,
            matrix_size=len(selection.matrix),
            versions=[r.version for r in selection.releases],
            policy=selection.report,
        )
        if not validated.dry_run:
            _write_plan(store, result, validated, now)
    except BaseException:
        if not validated.dry_run and outcomes:
            # Do not leave cells blocked until their claims expire.
            claimed = [cell for cell, outcome in outcomes.items() if outcome.status == "claimed"]
            release_claims(store, claimed, execution_id=execution_id, now=now)
        raise
    log.info("plan %s: %s%s", result.plan_id, result.counts, " (dry run)" if result.dry_run else "")
    return result


def _unpublished(
    matrix: list[tuple[Release, str, str]], published: dict[Cell, int], force: bool
) -> tuple[dict[Cell, int], dict[Cell, Release], list[SkippedCell]]:
    """Cells to claim (with their latest published build, 0 if none), their releases, and the
    published cells skipped (none with force)."""
    skipped: list[SkippedCell] = []
    wanted: dict[Cell, int] = {}
    release_of: dict[Cell, Release] = {}
    for release, platform, arch in matrix:
        cell = (release.version, platform, arch)
        build = published.get(cell, 0)
        if build and not force:
            skipped.append(
                SkippedCell(
                    cell=cell_name(*cell), reason="published", build=build, detail=f"published build {build}"
                )
            )
            continue
        wanted[cell] = build
        release_of[cell] = release
    return wanted, release_of, skipped


def _items(
    outcomes: dict[Cell, ClaimOutcome],
    wanted: dict[Cell, int],
    release_of: dict[Cell, Release],
    skipped: list[SkippedCell],
    store: Store,
    config: FarmConfig,
    execution_id: str,
) -> list[PlanItem]:
    """One item per cell this execution claimed; cells held by another go to `skipped`."""
    items: list[PlanItem] = []
    for cell in wanted:
        outcome = outcomes[cell]
        if outcome.status == "held":
            skipped.append(
                SkippedCell(
                    cell=outcome.cell,
                    reason="claimed",
                    build=outcome.build,
                    detail=f"build {outcome.build} claimed by {outcome.holder} until {outcome.expires_at}",
                )
            )
            continue
        spec = make_spec(release_of[cell], cell[1], cell[2], outcome.build, store, config, execution_id)
        items.append(
            PlanItem(
                cell=outcome.cell, spec=spec, job_definition=f"{cell[1]}-{cell[2]}", job_queue_arch=cell[2]
            )
        )
    return items


def _write_plan(store: Store, result: Plan, request: WorkflowInput, now: datetime) -> None:
    store.put_json(items_key(result.plan_id), [item.as_json() for item in result.items])
    store.put_json(
        plan_record_key(result.plan_id),
        {
            **result.summary,
            "created": iso(now),
            "request": request.model_dump(mode="json"),
            "policy": result.policy.model_dump(mode="json") if result.policy else None,
            "skipped": [s.model_dump(mode="json") for s in result.skipped],
        },
    )


def read_plan_items(store: Store, location: dict[str, str]) -> list[PlanItem]:
    """The items a Plan wrote, from its summary's "items" location."""
    raw, _ = store.read_json(store.key_from_location(location))
    if not isinstance(raw, list):
        raise ValueError(f"plan items at {location} are not a JSON array")
    return [PlanItem.model_validate(item) for item in raw]
