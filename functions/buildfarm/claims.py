"""Claims: claims/<version>/<platform>/<arch>.json, an expiring create-only marker per cell
(a runtime cell's: claims/runtimes/<name>/<version>/<platform>/<arch>.json, claim_marker).

A planner claims a cell before building it, so two executions never build the same cell.
The marker is created with If-None-Match; a released marker, or one whose execution has ended
(when nobody can tell: one that has expired), is taken over with If-Match on its ETag, so of
two racing planners exactly one wins. Markers are never deleted: publishing *releases* them
(expires_at = now), and the marker keeps the cell's last build number, so a failed build's
number is not reused.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Hashable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from buildfarm.layout import CLAIMS_PREFIX, Cell, cell_name, claim_key
from buildfarm.releases import iso, parse_iso
from buildfarm.store import Store, StoreConflict, StoreError, StoreIOError, StoreNotFound

log = logging.getLogger(__name__)

CLAIM_THREADS = 32
MAX_ROUNDS = 4

# Is this execution still running? True / False, or None when nobody can tell (the claim's
# expiry decides then). The cloud asks Step Functions; a local run checks the process.
Liveness = Callable[[str], "bool | None"]

K = TypeVar("K", bound=Hashable)  # a cell: a Python cell (layout.Cell) or a runtime cell


def unknown_liveness(execution_id: str) -> bool | None:
    """The Liveness when nobody can tell: every claim's expiry decides."""
    return None


class Claim(BaseModel):
    model_config = ConfigDict(extra="allow")
    cell: str
    execution_id: str
    plan_id: str
    build: int
    claimed_at: str
    expires_at: str
    released: bool = False
    released_at: str | None = None

    def live(self, now: datetime, is_running: Liveness = unknown_liveness) -> bool:
        """Held: not released, and its execution still running: as is_running says when it can
        tell (a running execution's claims hold past their expiry: a long run's queued cells are
        not built twice), else until the claim expires."""
        if self.released:
            return False
        state = is_running(self.execution_id)
        if state is not None:
            return bool(state)
        expires = parse_iso(self.expires_at)
        return expires is not None and expires > now


class ClaimOutcome(BaseModel):
    """claimed: this execution may build `build`. held: another live execution holds the cell.
    published: another execution published `build` while this plan claimed (buildfarm.plan)."""

    cell: str
    status: Literal["claimed", "held", "published"]
    build: int
    holder: str | None = None
    expires_at: str | None = None


def _parse(raw: object) -> Claim | None:
    try:
        return Claim.model_validate(raw)
    except ValidationError:
        return None


def _parse_bytes(data: bytes) -> Claim | None:
    """A stored marker, None if it is malformed: not JSON, not a claim, or nested deeper than
    json.loads follows (it raises RecursionError for that, not ValueError)."""
    try:
        return _parse(json.loads(data))
    except (ValueError, RecursionError):
        return None


def _read_marker(store: Store, key: str) -> tuple[Claim | None, str]:
    """(the marker at key, None if malformed; its ETag). StoreNotFound, StoreError as read raises
    them: every marker read parses with _parse_bytes, so none crashes on a malformed one."""
    data, etag = store.read(key)
    return _parse_bytes(data), etag


@dataclass(frozen=True)
class Claimant:
    """Who claims, and when: the execution and its plan, the time, how long a new claim lasts,
    and how to tell whether another claim's execution still runs."""

    execution_id: str
    plan_id: str
    now: datetime
    ttl_seconds: int
    is_running: Liveness = unknown_liveness

    def marker(self, name: str, build: int) -> dict:
        """The claim marker this claimant writes for build `build` of the cell `name`."""
        return Claim(
            cell=name,
            execution_id=self.execution_id,
            plan_id=self.plan_id,
            build=build,
            claimed_at=iso(self.now),
            expires_at=iso(self.now + timedelta(seconds=self.ttl_seconds)),
        ).model_dump(mode="json")


def claim_cell(
    store: Store, cell: Cell, claimant: Claimant, *, published_build: int, marker_exists: bool = False
) -> ClaimOutcome:
    """Claim one Python cell: claim_marker at its claims/<cell>.json."""
    key, name = claim_key(*cell), cell_name(*cell)
    return claim_marker(
        store, key, name, claimant, published_build=published_build, marker_exists=marker_exists
    )


def claim_marker(
    store: Store,
    key: str,
    name: str,
    claimant: Claimant,
    *,
    published_build: int,
    marker_exists: bool = False,
) -> ClaimOutcome:
    """Claim the cell `name` whose marker is `key` (a Python cell's, or a runtime cell's
    layout.runtime_claim_key); build = max(published, last claimed) + 1. Idempotent for the same
    execution. A claim whose execution has ended (is_running says False) is taken over before
    it expires."""
    read_first = marker_exists
    for _ in range(MAX_ROUNDS):
        if not read_first:
            build = published_build + 1
            try:
                store.put_json(key, claimant.marker(name, build), if_none_match=True)
                return ClaimOutcome(cell=name, status="claimed", build=build)
            except StoreConflict:
                pass
        read_first = False
        try:
            current, etag = _read_marker(store, key)
        except StoreNotFound:
            continue  # removed by hand in between: try creating again
        if current is None:
            log.warning("claim marker %s is unreadable; taking it over", store.url(key))
        elif current.execution_id == claimant.execution_id and not current.released:
            # Our own claim (e.g. the Plan step retried): keep its build number.
            return ClaimOutcome(cell=name, status="claimed", build=current.build)
        elif current.live(claimant.now, claimant.is_running):
            return _held(name, current)
        build = max(published_build, current.build if current else 0) + 1
        try:
            store.put_json(key, claimant.marker(name, build), if_match=etag)
            return ClaimOutcome(cell=name, status="claimed", build=build)
        except StoreConflict:
            continue  # another planner took it over first: look again
    return _holder_now(store, key, name, published_build)


def _held(name: str, current: Claim) -> ClaimOutcome:
    """The outcome for a cell that current, another execution's live claim, holds."""
    return ClaimOutcome(
        cell=name,
        status="held",
        build=current.build,
        holder=current.execution_id,
        expires_at=current.expires_at,
    )


def _holder_now(store: Store, key: str, name: str, published_build: int) -> ClaimOutcome:
    """After losing every race for a cell: report whoever holds it now."""
    try:
        current, _ = _read_marker(store, key)
    except StoreError:
        current = None
    if current is None:
        return ClaimOutcome(
            cell=name, status="held", build=published_build + 1, holder="unknown", expires_at=None
        )
    return _held(name, current)


def peek_marker(
    store: Store, key: str, name: str, claimant: Claimant, *, published_build: int, marker_exists: bool
) -> ClaimOutcome:
    """What claim_marker would do, without writing (dry run)."""
    current = None
    if marker_exists:
        try:
            current, _ = _read_marker(store, key)
        except StoreError:
            current = None
    if (
        current is not None
        and current.execution_id != claimant.execution_id
        and current.live(claimant.now, claimant.is_running)
    ):
        return _held(name, current)
    build = max(published_build, current.build if current else 0) + 1
    return ClaimOutcome(cell=name, status="claimed", build=build)


def claim_or_peek(
    store: Store,
    key: str,
    name: str,
    claimant: Claimant,
    *,
    published_build: int,
    marker_exists: bool,
    dry_run: bool,
) -> ClaimOutcome:
    """claim_marker, or for a dry run peek_marker: how planners claim Python and runtime cells."""
    decide = peek_marker if dry_run else claim_marker
    return decide(store, key, name, claimant, published_build=published_build, marker_exists=marker_exists)


def _python_marker(cell: Cell) -> str:
    return claim_key(*cell)


def existing_markers(store: Store) -> set[str]:
    """Keys of all claim markers: one paginated listing (1 call per 1,000 markers)."""
    return {info.key for info in store.list(CLAIMS_PREFIX)}


def claim_cells(
    store: Store,
    cells: dict[Cell, int],
    *,
    execution_id: str,
    plan_id: str,
    now: datetime,
    ttl_seconds: int,
    dry_run: bool,
    is_running: Liveness = unknown_liveness,
) -> dict[Cell, ClaimOutcome]:
    """Claim (or, dry run, peek at) every cell -> outcome. cells: {cell: last published build or 0}.

    A cell's new build is numbered past its published build, its marker's last build, and every
    number already under builds/ or logs/ (a build made without a claim, e.g. by an older
    `buildfarm build`, must never be overwritten or mistaken for ours): two listings per cell,
    paid only by cells that are about to be claimed."""
    if not cells:
        return {}
    markers = existing_markers(store)
    claimant = Claimant(execution_id, plan_id, now, ttl_seconds, is_running)

    def one(cell: Cell) -> ClaimOutcome:
        key, floor = claim_key(*cell), max(cells[cell], *store.build_numbers(*cell), 0)
        exists = key in markers
        name = cell_name(*cell)
        return claim_or_peek(
            store, key, name, claimant, published_build=floor, marker_exists=exists, dry_run=dry_run
        )

    ordered = list(cells)
    with ThreadPoolExecutor(max_workers=min(CLAIM_THREADS, len(ordered))) as pool:
        return dict(zip(ordered, pool.map(one, ordered), strict=True))


def recheck_published(
    store: Store,
    outcomes: dict[K, ClaimOutcome],
    known: Mapping[K, int],
    published_now: Callable[[], Mapping[K, int]],
    execution_id: str,
    now: datetime,
    dry_run: bool,
    marker_key: Callable[[K], str] = _python_marker,
) -> list[K]:
    """Give back the claims (in outcomes) of cells another execution published after the
    planner read the catalog (known: cell -> the build it showed published, or 0). Python cells
    and runtime cells alike: marker_key is the cell's claim marker (a runtime cell's:
    layout.runtime_claim_key), published_now maps a cell to its published build when that
    build makes the claim needless. Returns those cells.

    A publisher merges its cell into versions.json before it releases the claim, and taking over
    that released marker numbers past its build: so only a claim numbered past known + 1 can be
    of such a cell, and published_now (versions.json read again, after the claims) shows it.
    Those claims are released (their number stays unused, like a failed build's) and their
    outcome becomes "published"."""
    suspects = [c for c, o in outcomes.items() if o.status == "claimed" and o.build > known.get(c, 0) + 1]
    if not suspects:
        return []
    published = published_now()
    meanwhile = [cell for cell in suspects if published.get(cell, 0) > known.get(cell, 0)]
    if meanwhile and not dry_run:
        release_markers(store, [marker_key(cell) for cell in meanwhile], execution_id=execution_id, now=now)
    for cell in meanwhile:
        outcomes[cell] = ClaimOutcome(cell=outcomes[cell].cell, status="published", build=published[cell])
    return meanwhile


def _delete_when_full(store: Store, key: str, etag: str, error: StoreIOError) -> bool:
    """A directory store that cannot take the released marker (disk full): delete our marker
    instead, which needs no space, so the cell is not blocked until the claim expires. Its build
    number stays reserved by whatever the build left under builds/ or logs/ (claim_cells counts
    those); a build that left nothing there has nothing to collide with."""
    try:
        store.delete(key, if_match=etag)
    except StoreError as again:
        log.warning("cannot release claim %s: %s; nor delete it: %s", store.url(key), error, again)
        return False
    log.warning("claim %s deleted instead of released: %s", store.url(key), error)
    return True


def release_claims(store: Store, cells: Iterable[Cell], *, execution_id: str, now: datetime) -> int:
    """Mark this execution's claims released (keeping the build number). Returns how many."""
    return release_markers(store, [claim_key(*cell) for cell in cells], execution_id=execution_id, now=now)


def release_markers(store: Store, keys: Iterable[str], *, execution_id: str, now: datetime) -> int:
    """release_claims for any claim markers (runtime cells' too), by key."""
    ordered = list(keys)

    def one(key: str) -> bool:
        try:
            current, etag = _read_marker(store, key)
        except StoreError:
            return False
        if current is None or current.execution_id != execution_id or current.released:
            return False  # expired and taken over by someone else, or already released
        released = current.model_copy(
            update={"released": True, "released_at": iso(now), "expires_at": iso(now)}
        )
        try:
            store.put_json(key, released.model_dump(mode="json"), if_match=etag)
        except StoreConflict:
            return False
        except StoreIOError as error:
            return _delete_when_full(store, key, etag, error)
        return True

    if not ordered:
        return 0
    with ThreadPoolExecutor(max_workers=min(CLAIM_THREADS, len(ordered))) as pool:
        return sum(pool.map(one, ordered))
