"""Runtime cells in a farm run: after the run's Python cells are published, plan the runtime
cells of the run's platforms and arches (planning.plan_runtimes over versions.json), claim each
one to build (a claim marker under claims/runtimes/, as Python cells are claimed), build it
(runtime_build, in this process) and publish it (runtimes.publish).

plan_run_runtimes only reads in a dry run; otherwise it writes nothing but the claims. A claim
numbered past what versions.json showed reads it again (claims.recheck_published, as for Python
cells): a cell another execution published current meanwhile is given back, not rebuilt.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path

from buildfarm.attest.signing import Signer
from buildfarm.catalog.versions_json import RuntimeCell, read_versions, runtime_cells
from buildfarm.claims import (
    Claimant,
    ClaimOutcome,
    Liveness,
    claim_or_peek,
    recheck_published,
    unknown_liveness,
)
from buildfarm.errors import BuildfarmError
from buildfarm.publish import CellOutcome
from buildfarm.runtimes.definitions import RuntimeDefinition
from buildfarm.runtimes.keys import (
    RUNTIME_CACHE_DIR,
    build_numbers,
    needs_build,
    runtime_cell_dir,
    runtime_claim_key,
)
from buildfarm.runtimes.planning import RuntimePlan, RuntimePlanItem, plan_runtimes
from buildfarm.runtimes.publish import publish_runtime
from buildfarm.runtimes.runtime_build import RuntimeRequest, build_runtime
from buildfarm.store import LocalStore, Store, StoreError, check_key
from buildfarm.verify import short

log = logging.getLogger(__name__)

BROKEN_DEFINITION = (BuildfarmError, StoreError, OSError, ValueError)
"""What one definition's planning or claiming may raise (a version no store key can hold, a
lock file gone): that definition is left out, logged and counted; the others and the run's
Python cells go on."""


@dataclass(frozen=True)
class ClaimedRuntime:
    """A runtime cell this run builds, at the build number its claim gave."""

    item: RuntimePlanItem
    definition: RuntimeDefinition
    build: int

    @property
    def name(self) -> str:
        return self.item.name


@dataclass
class RuntimeRunPlan:
    plan: RuntimePlan
    claimed: list[ClaimedRuntime] = field(default_factory=list)
    held: list[tuple[str, int, str]] = field(default_factory=list)  # (cell, build, by whom)
    deferred: list[str] = field(default_factory=list)  # over the execution's budget: a later run's
    definitions: dict[str, RuntimeDefinition] = field(default_factory=dict)  # by name, resolved
    published: dict[RuntimeCell, int] = field(default_factory=dict)  # the published build numbers
    # definition -> why it is not planned: no version (no git tag), or broken (BROKEN_DEFINITION)
    unresolved: dict[str, str] = field(default_factory=dict)


def in_run(plan: RuntimePlan, where: set[tuple[str, str]]) -> RuntimePlan:
    """The plan's cells on the run's (platform, arch) pairs only."""

    def wanted(cell: RuntimeCell) -> bool:
        return (cell[2], cell[3]) in where

    return RuntimePlan(
        build=[item for item in plan.build if wanted(item.cell)],
        waiting=[(cell, why) for cell, why in plan.waiting if wanted(cell)],
        current=[cell for cell in plan.current if wanted(cell)],
    )


def _versions(definitions: list[RuntimeDefinition]) -> tuple[dict[str, str], dict[str, str]]:
    """({name: resolved version}, {name: why it has none}). version = "git-tag" needs git, a
    checkout and a tag there: without one the definition is broken, the others go on."""
    resolved: dict[str, str] = {}
    unresolved: dict[str, str] = {}
    for definition in definitions:
        try:
            resolved[definition.name] = definition.resolved_version()
        except BROKEN_DEFINITION as error:
            _broken(unresolved, definition.name, error)
    return resolved, unresolved


def next_build(store: Store, cell: RuntimeCell, published: int) -> int:
    """Past the published build and every number already under the cell's folder."""
    return max(published, *build_numbers(store.list_children(runtime_cell_dir(*cell))), 0) + 1


def plan_runtime_cells(
    store: Store, definitions: list[RuntimeDefinition], where: set[tuple[str, str]]
) -> RuntimeRunPlan:
    """The run's runtime cells from versions.json (one read), nothing claimed: which to build,
    which wait for their Python, which are current."""
    versions, unresolved = _versions(definitions)
    document, _ = read_versions(store)
    published = runtime_cells(document)
    manifests = {cell: entry.model_dump(mode="json") for cell, entry in published.items()}
    plan, usable = RuntimePlan([], [], []), []
    for definition in (definition for definition in definitions if definition.name in versions):
        try:  # one definition at a time: a broken one costs only its own cells
            # At its resolved version: a build installs at that version's prefix.
            resolved = definition.at_version(versions[definition.name])
            one = in_run(plan_runtimes([resolved], document, manifests), where)
            for item in one.build:
                check_key(runtime_claim_key(*item.cell))
        except BROKEN_DEFINITION as error:
            _broken(unresolved, definition.name, error)
            continue
        usable.append(resolved)
        plan.build.extend(one.build)
        plan.waiting.extend(one.waiting)
        plan.current.extend(one.current)
    return RuntimeRunPlan(
        plan,
        unresolved=unresolved,
        definitions={definition.name: definition for definition in usable},
        published={cell: entry.build for cell, entry in published.items()},
    )


def claim_runtime_cells(
    store: Store,
    runtimes: RuntimeRunPlan,
    *,
    execution_id: str,
    now: datetime,
    ttl_seconds: int,
    dry_run: bool,
    is_running: Liveness = unknown_liveness,
    limit: int | None = None,
) -> RuntimeRunPlan:
    """Claim the planned cells to build (a dry run claims nothing: `claimed` then holds the
    numbers a run would take), filling `runtimes` in. With `limit` (what is left of the
    execution's budget), at most that many are claimed and the rest are deferred to a later run;
    cells another execution holds, or published meanwhile (now current), do not count."""
    pending = list(runtimes.plan.build)
    while pending and (limit is None or len(runtimes.claimed) < limit):
        size = len(pending) if limit is None else limit - len(runtimes.claimed)
        chunk, pending = pending[:size], pending[size:]
        _claim_chunk(
            store, runtimes, chunk, execution_id=execution_id, now=now, ttl_seconds=ttl_seconds,
            dry_run=dry_run, is_running=is_running,
        )  # fmt: skip
    runtimes.deferred.extend(item.name for item in pending)
    return runtimes


def _claim_chunk(
    store: Store,
    runtimes: RuntimeRunPlan,
    chunk: list[RuntimePlanItem],
    *,
    execution_id: str,
    now: datetime,
    ttl_seconds: int,
    dry_run: bool,
    is_running: Liveness,
) -> None:
    """Claim chunk's cells into runtimes (claimed, held, or current when another execution
    published a current build after versions.json was read: claims.recheck_published)."""
    items = {item.cell: item for item in chunk}
    outcomes: dict[RuntimeCell, ClaimOutcome] = {}
    for item in chunk:
        try:
            outcomes[item.cell] = _claim_one(
                store, runtimes, item, execution_id, now, ttl_seconds, dry_run, is_running
            )
        except BROKEN_DEFINITION as error:
            _broken(runtimes.unresolved, item.cell[0], error)
    recheck_published(
        store, outcomes, runtimes.published, partial(_current_now, store, items), execution_id, now, dry_run,
        marker_key=lambda cell: runtime_claim_key(*cell),
    )  # fmt: skip
    for cell, outcome in outcomes.items():
        if outcome.status == "claimed":
            runtimes.claimed.append(ClaimedRuntime(items[cell], runtimes.definitions[cell[0]], outcome.build))
        elif outcome.status == "published":
            runtimes.plan.current.append(cell)
        else:
            runtimes.held.append(
                (outcome.cell, outcome.build, f"{outcome.holder} until {outcome.expires_at}")
            )


def _current_now(store: Store, items: dict[RuntimeCell, RuntimePlanItem]) -> dict[RuntimeCell, int]:
    """versions.json read again: the published build of each of items' cells that needs no new
    build for its item (same lock, same Python build). A build published meanwhile from an
    older lock or Python leaves the claim standing: the item's build is still wanted."""
    published = runtime_cells(read_versions(store)[0])
    current = {}
    for cell, entry in published.items():
        if (item := items.get(cell)) is None:
            continue
        python = item.python
        if (
            needs_build(entry.model_dump(mode="json"), item.lock_sha256, python.version, python.build or 0)
            is None
        ):
            current[cell] = entry.build
    return current


def _broken(unresolved: dict[str, str], name: str, error: Exception) -> None:
    log.error("runtime definition %s not planned: %s", name, error)
    unresolved[name] = short(f"broken: {error}")


def _claim_one(
    store: Store,
    runtimes: RuntimeRunPlan,
    item: RuntimePlanItem,
    execution_id: str,
    now: datetime,
    ttl_seconds: int,
    dry_run: bool,
    is_running: Liveness,
) -> ClaimOutcome:
    """Claim one planned cell (a dry run only peeks): claimed, or held by another execution."""
    floor = next_build(store, item.cell, runtimes.published.get(item.cell, 0)) - 1
    key = runtime_claim_key(*item.cell)
    claimant = Claimant(execution_id, execution_id, now, ttl_seconds, is_running)
    return claim_or_peek(
        store,
        key,
        item.name,
        claimant,
        published_build=floor,
        marker_exists=store.exists(key),
        dry_run=dry_run,
    )


def plan_run_runtimes(
    store: Store,
    definitions: list[RuntimeDefinition],
    where: set[tuple[str, str]],
    *,
    execution_id: str,
    now: datetime,
    ttl_seconds: int,
    dry_run: bool,
    is_running: Liveness = unknown_liveness,
    limit: int | None = None,
) -> RuntimeRunPlan:
    """Plan the run's runtime cells (plan_runtime_cells) and claim the ones to build
    (claim_runtime_cells)."""
    return claim_runtime_cells(
        store, plan_runtime_cells(store, definitions, where), execution_id=execution_id, now=now,
        ttl_seconds=ttl_seconds, dry_run=dry_run, is_running=is_running, limit=limit,
    )  # fmt: skip


def default_cache(store: Store) -> Path:
    """uv's download cache: in a directory store (runtimes/.cache/uv, never served), shared by
    every build from it; beside an S3 store, a local one."""
    if isinstance(store, LocalStore):
        return store.root / RUNTIME_CACHE_DIR
    return Path.home() / ".cache" / "buildfarm" / "uv"


def build_claimed(
    store: Store,
    claimed: ClaimedRuntime,
    execution_id: str,
    now: Callable[[], datetime],
    cache: Path | None = None,
    *,
    signer: Signer | None,
) -> CellOutcome:
    """Build one claimed runtime cell here and publish it, signed by signer (None: unsigned);
    a failed build is a failed outcome
    (its claim released), never an exception that would stop the run's other cells."""
    _, version, platform, arch = claimed.item.cell
    request = RuntimeRequest(
        definition=claimed.definition, version=version, platform=platform, arch=arch, store=store,
        cache=cache or default_cache(store), build=claimed.build, execution_id=execution_id,
    )  # fmt: skip
    failure = ""
    try:
        build_runtime(request)
    except Exception as error:  # a runtime's own failure (a bad lock, PyPI down): this cell fails
        failure = short(
            str(error) if isinstance(error, BuildfarmError) else f"{type(error).__name__}: {error}"
        )
    return publish_runtime(
        store, claimed.item.cell, claimed.build, execution_id, now(), failure, signer=signer,
        planned_lock=claimed.item.lock_sha256,
    )  # fmt: skip
