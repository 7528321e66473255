"""The planner: workflow input -> the cells to build, claimed, with one build spec each.

Store calls for a scheduled plan where everything is published: one read of releases.json
and one of versions.json, whatever the matrix size, and no write (a plan with nothing to
build is not recorded). Cells to build then cost one listing of runs/ (the budget), one of
claims/ (paginated), two listings per cell (its build numbers under builds/ and logs/: a new
build is numbered past all of them) and about one or two calls per cell to claim it, plus the
plan write and the open-run marker; and a second read of versions.json if a claim numbers past
what the first showed (claims.recheck_published).
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

from packaging.version import Version

from buildfarm import clock
from buildfarm.catalog import Cell, cell_name, published_builds, read_versions
from buildfarm.catalog.versions_json import failing_cells
from buildfarm.claims import (
    ClaimOutcome,
    Liveness,
    claim_cells,
    recheck_published,
    release_claims,
    unknown_liveness,
)
from buildfarm.config import FarmConfig
from buildfarm.layout import (
    EXECUTION_ID_CHARACTERS,
    EXECUTION_ID_MAX_LENGTH,
    artifact_dir,
    items_key,
    plan_record_key,
    run_marker_key,
    runtime_items_key,
    runtime_outcomes_prefix,
)
from buildfarm.models import BuildSpec, Source
from buildfarm.plan_items import (  # noqa: F401 (re-exported)
    PlanItem,
    SkippedCell,
    close_run,
    open_runs,
    read_plan_items,
    recorded_outcomes,
)
from buildfarm.platforms import Registry, load_registry
from buildfarm.policy import PolicyReport, Selection, select_cells
from buildfarm.releases import (
    Release,
    ReleaseLookupError,
    ReleasesState,
    fetch_python_org,
    iso,
    load_releases,
    save_releases,
    source_url,
)
from buildfarm.retry import hold_back_failing
from buildfarm.runtimes.cloud_items import RuntimeItem, runtime_item
from buildfarm.runtimes.definitions import RuntimeDefinition
from buildfarm.runtimes.farm_cells import claim_runtime_cells, plan_runtime_cells
from buildfarm.store import Store, StoreError
from buildfarm.workflow_input import InputError, WorkflowInput, parse_workflow_input

log = logging.getLogger(__name__)

_SAFE_ID = re.compile(f"[^{EXECUTION_ID_CHARACTERS}]")
MAX_ID = EXECUTION_ID_MAX_LENGTH


def safe_id(text: str) -> str:
    """An id usable as one store key segment: an execution id (layout.EXECUTION_ID).

    Ids that had to be changed get a short hash of the original, so distinct inputs stay distinct.
    """
    cleaned = _SAFE_ID.sub("-", text or "").strip(".-")[:MAX_ID]
    if cleaned and cleaned == text:
        return cleaned
    digest = hashlib.sha256((text or "").encode()).hexdigest()[:8]
    return f"{cleaned[: MAX_ID - 9]}-{digest}" if cleaned else f"id-{digest}"


def new_execution_id(now: datetime | None = None) -> str:
    """An execution id for local runs: local-YYYYmmddTHHMMSSZ-<random>."""
    now = now or clock.now()
    return f"local-{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}"


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
    # Cells left for a later run: over this execution's budget (newest versions go first).
    deferred: int = 0
    # One budget for both kinds: Python cells claim first, runtime cells take what is left.
    budget: int = 0
    # The run's runtime cells (buildfarm.runtimes.cloud_items), claimed: the BuildRuntimes Map's.
    runtime_items: list[RuntimeItem] = field(default_factory=list)
    runtime_items_location: dict[str, str] = field(default_factory=dict)
    runtimes_deferred: int = 0
    # Runtime definitions left out of this plan (no version, or broken: logged by farm_cells).
    runtimes_broken: int = 0

    @property
    def counts(self) -> dict[str, int]:
        return {
            "cells": self.matrix_size,
            "planned": len(self.items),
            "skipped_published": sum(1 for s in self.skipped if s.reason == "published"),
            "skipped_claimed": sum(1 for s in self.skipped if s.reason == "claimed"),
            "skipped_failing": sum(1 for s in self.skipped if s.reason == "failing"),
            "deferred": self.deferred,
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
            "budget": self.budget,
            "releases": self.releases_refresh[:200],
            "runtimes": {
                "planned": len(self.runtime_items),
                "deferred": self.runtimes_deferred,
                "broken": self.runtimes_broken,
                "items": self.runtime_items_location,
            },
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
    is_running: Liveness | None = None,
    runtimes: list[RuntimeDefinition] | None = None,
) -> Plan:
    """Validate, expand under the policy (buildfarm.policy), drop published cells (unless force),
    claim the rest up to this execution's budget (newest versions first), write the items.
    Raises InputError (naming the bad value) before anything is written. With request.dry_run,
    the same plan is computed and nothing is claimed or written. is_running tells whether
    another execution still runs (its claims then hold; see buildfarm.claims). With `runtimes`
    (definitions), the matrix's runtime cells whose Python is published are claimed too, with
    what the Python cells left of the budget (both take Batch time within one execution)."""
    now = now or clock.now()
    registry = registry or load_registry()
    validated = _as_request(request, config)
    execution_id = safe_id(execution_id)
    alive: Liveness = is_running or unknown_liveness

    releases_state, selection = _select(validated, store, config, registry, now, fetch_releases)
    scheduled = not (validated.versions or validated.force)
    wanted, release_of, skipped = _to_build(selection.matrix, read_versions(store)[0], validated, config, now)
    marked = bool(wanted) and not validated.dry_run
    budget = _budget(store, config, execution_id, alive, scheduled) if wanted else 0
    outcomes: dict[Cell, ClaimOutcome] = {}
    try:
        if marked:
            _mark_run(store, execution_id, budget, now)
        outcomes, deferred = _claim_by_priority(
            store, wanted, release_of, budget, execution_id, config, now, validated, alive
        )
        items = _items(outcomes, wanted, release_of, skipped, store, config, execution_id)
        result = Plan(
            plan_id=execution_id, execution_id=execution_id, dry_run=validated.dry_run,
            force=validated.force, items=items, skipped=skipped,
            items_location=store.location_of(items_key(execution_id)),
            releases_refresh=releases_state.refresh, matrix_size=len(selection.matrix),
            versions=[r.version for r in selection.releases], policy=selection.report,
            deferred=deferred, budget=budget,
            runtime_items_location=store.location_of(runtime_items_key(execution_id)),
        )  # fmt: skip
        if runtimes:  # the budget is still to be counted if there was no Python cell to claim
            budget_of = None if wanted else partial(_budget, store, config, execution_id, alive, scheduled)
            marked |= _add_runtime_items(result, store, config, runtimes, selection, now, alive, budget_of)
        if not validated.dry_run:
            _record(store, result, validated, marked, now)
    except BaseException:
        if not validated.dry_run:
            _abandon(store, execution_id, outcomes, now)
        raise
    log.info("plan %s: %s%s", result.plan_id, result.counts, " (dry run)" if result.dry_run else "")
    return result


def _add_runtime_items(
    result: Plan,
    store: Store,
    config: FarmConfig,
    definitions: list[RuntimeDefinition],
    selection: Selection,
    now: datetime,
    alive: Liveness,
    budget_of: Callable[[], int] | None,
) -> bool:
    """Claim the runtime cells of the selection's platforms and arches with what the plan's
    Python items left of its budget, as the plan's runtime items. budget_of: the plan had no
    Python cell to claim, so neither a budget nor a run marker yet; both come now, only if a
    runtime cell is to be built (a no-op plan still writes nothing). True if it opened the run."""
    execution_id = result.execution_id
    where = {(platform, arch) for _, platform, arch in selection.matrix}
    runtimes = plan_runtime_cells(store, definitions, where)
    result.runtimes_broken = len(runtimes.unresolved)
    if not runtimes.plan.build:
        return False
    opened = budget_of is not None and not result.dry_run
    if budget_of is not None:
        result.budget = budget_of()
    if opened:
        _mark_run(store, execution_id, result.budget, now)  # before claiming, as for Python cells
    claim_runtime_cells(
        store, runtimes, execution_id=execution_id, now=now, ttl_seconds=config.claim_ttl_seconds,
        dry_run=result.dry_run, is_running=alive, limit=max(0, result.budget - len(result.items)),
    )  # fmt: skip
    result.runtimes_deferred = len(runtimes.deferred)
    result.runtimes_broken = len(runtimes.unresolved)  # claiming may find more
    result.runtime_items = [runtime_item(claimed, store, execution_id) for claimed in runtimes.claimed]
    return opened


def _select(
    request: WorkflowInput,
    store: Store,
    config: FarmConfig,
    registry: Registry,
    now: datetime,
    fetch_releases: Any,
) -> tuple[ReleasesState, Selection]:
    """The releases (refreshed when due) and the policy's cells for a request; InputError names
    an unknown version before anything is written. Saves a refreshed releases.json (not in a
    dry run): the request is valid, so from here on the planner may write."""
    releases_state = load_releases(store, config, now, fetch=fetch_releases)
    try:
        selection = select_cells(request, releases_state.catalog, config, registry, now.date())
    except ReleaseLookupError as error:
        raise InputError(f"invalid workflow input: versions: {error}") from None
    if not request.dry_run:
        save_releases(store, releases_state)
    return releases_state, selection


def _record(store: Store, result: Plan, request: WorkflowInput, marked: bool, now: datetime) -> None:
    """Write a plan that has items (Python or runtime) and its run marker with their count (for
    _budget; recovery finalizes the run if its execution ends first); else close the run marker
    it opened (everything wanted is held or deferred: nothing to finalize)."""
    planned = len(result.items) + len(result.runtime_items)
    if planned:
        _write_plan(store, result, request, now)
        _mark_run(store, result.plan_id, planned, now)  # the real count, for _budget
    elif marked:
        close_run(store, result.execution_id)


def _abandon(store: Store, execution_id: str, outcomes: dict[Cell, ClaimOutcome], now: datetime) -> None:
    """A plan that failed half-way: release the Python cells it claimed (cells must not stay
    blocked until their claims expire; its runtime claims wait for their expiry or for the
    execution's end) and close its run marker if it wrote one (a delete of an absent key is
    harmless, and this is the failure path only)."""
    if outcomes:
        claimed = [cell for cell, outcome in outcomes.items() if outcome.status == "claimed"]
        release_claims(store, claimed, execution_id=execution_id, now=now)
    close_run(store, execution_id)


def _budget(store: Store, config: FarmConfig, execution_id: str, alive: Liveness, scheduled: bool) -> int:
    """How many cells (Python and runtime) this execution may claim: config.cells_per_execution,
    less (for a scheduled run) the unfinished cells of other running executions, so that
    everything outstanding finishes within one execution's budget however often the schedule
    starts a run. A request that names versions or forces (break glass) gets the whole budget."""
    if not scheduled:
        return config.cells_per_execution
    in_flight = 0
    for other in open_runs(store):
        if other == execution_id or alive(other) is False:
            continue  # ended: recovery finalizes it
        try:
            marker, _ = store.read_json(run_marker_key(other))
            planned = int(marker.get("planned", 0)) if isinstance(marker, dict) else 0
        except (StoreError, ValueError, TypeError):
            continue
        # Cells, not outcome records: one failed and then published has two.
        decided = len(recorded_outcomes(store, other))
        decided += sum(1 for _ in store.list(runtime_outcomes_prefix(other)))
        in_flight += max(0, planned - decided)
    return max(0, config.cells_per_execution - in_flight)


def _mark_run(store: Store, execution_id: str, planned: int, now: datetime) -> None:
    store.put_json(
        run_marker_key(execution_id), {"execution_id": execution_id, "created": iso(now), "planned": planned}
    )


def _published(store: Store) -> dict[Cell, int]:
    return published_builds(read_versions(store)[0])


def _priority(release: Release) -> Version:
    """Newest version first. Not the release date: `releases add|import` record none, and an
    undated release must not wait behind every dated one (within a series a higher version is
    always the newer release)."""
    return Version(release.version)


def _claim_by_priority(
    store: Store,
    wanted: dict[Cell, int],
    release_of: dict[Cell, Release],
    budget: int,
    execution_id: str,
    config: FarmConfig,
    now: datetime,
    request: WorkflowInput,
    alive: Liveness,
) -> tuple[dict[Cell, ClaimOutcome], int]:
    """Claim the wanted cells, newest versions first, until `budget` are claimed; cells held by
    another execution, or published by one meanwhile, do not count. Returns the outcomes and
    how many cells were deferred."""
    ordered = sorted(wanted, key=lambda cell: _priority(release_of[cell]), reverse=True)
    outcomes: dict[Cell, ClaimOutcome] = {}
    position = claimed = 0
    while position < len(ordered) and claimed < budget:
        chunk = ordered[position : position + budget - claimed]
        position += len(chunk)
        fresh = claim_cells(
            store, {cell: wanted[cell] for cell in chunk}, execution_id=execution_id, plan_id=execution_id,
            now=now, ttl_seconds=config.claim_ttl_seconds, dry_run=request.dry_run, is_running=alive,
        )  # fmt: skip
        if not request.force:  # published since versions.json was read: not to be rebuilt
            published_now = partial(_published, store)
            recheck_published(store, fresh, wanted, published_now, execution_id, now, request.dry_run)
        outcomes.update(fresh)
        claimed = sum(1 for outcome in outcomes.values() if outcome.status == "claimed")
    for cell in ordered[position:]:
        del wanted[cell]  # deferred: neither claimed nor skipped
    return outcomes, len(ordered) - position


def _to_build(
    matrix: list[tuple[Release, str, str]],
    catalog: dict[str, Any],
    request: WorkflowInput,
    config: FarmConfig,
    now: datetime,
) -> tuple[dict[Cell, int], dict[Cell, Release], list[SkippedCell]]:
    """_unpublished's cells, less the failing ones a scheduled run (no versions named, no force)
    holds back until their retry is due (buildfarm.retry)."""
    wanted, release_of, skipped = _unpublished(matrix, published_builds(catalog), request.force)
    if not (request.versions or request.force):
        skipped += hold_back_failing(wanted, failing_cells(catalog), config.failed_retry_hours, now)
    return wanted, release_of, skipped


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
    """One item per cell this execution claimed; cells held or published by another go to
    `skipped`."""
    items: list[PlanItem] = []
    for cell in wanted:
        outcome = outcomes[cell]
        if outcome.status == "published":
            skipped.append(
                SkippedCell(
                    cell=outcome.cell, reason="published", build=outcome.build,
                    detail=f"published build {outcome.build} (by another execution while this plan claimed)",
                )
            )  # fmt: skip
            continue
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
    if result.runtime_items:
        runtime_items = [item.model_dump(mode="json") for item in result.runtime_items]
        store.put_json(store.key_from_location(result.summary["runtimes"]["items"]), runtime_items)
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
