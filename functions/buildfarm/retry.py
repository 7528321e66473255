"""When the schedule retries a failing cell: a backoff on versions.json's `failing` record.

A cell whose newest build failed (a compile error, a failed self-test, a job that ran out of
time) would otherwise be rebuilt by every scheduled run: hourly, a full pgo+lto build and a
failure mail each time, for as long as the cause lasts. So a scheduled plan (`{}`, no versions
named, no force) holds such a cell back until `failed_retry_hours` after its last failure,
doubling with every failed build in a row (build - since_build + 1) up to MAX_WAIT. Naming the
version (break glass, `buildfarm run --versions`) or `force` rebuilds it at once; a published
build clears the record (catalog.versions_json.merge_cells), and with it the backoff.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from buildfarm.catalog import Cell, cell_name
from buildfarm.catalog.versions_json import CatalogFailure
from buildfarm.plan_items import SkippedCell
from buildfarm.releases import iso, parse_iso

MAX_WAIT = timedelta(days=7)


@dataclass(frozen=True)
class HeldBack:
    """A failing cell the schedule does not retry yet."""

    failure: CatalogFailure
    in_a_row: int  # failed builds since the cell last published
    retry_from: datetime

    @property
    def detail(self) -> str:
        builds = "build" if self.in_a_row == 1 else f"{self.in_a_row} builds in a row, the last"
        return (
            f"failing: {builds} {self.failure.build} failed {self.failure.failed} "
            f"({self.failure.reason[:120]}); the schedule retries it from {iso(self.retry_from)}, "
            "naming its version rebuilds it now"
        )


def failed_in_a_row(failure: CatalogFailure) -> int:
    """Failed builds since the cell last published (build numbers only grow)."""
    return max(1, failure.build - failure.since_build + 1)


def retry_from(failure: CatalogFailure, first_wait: timedelta) -> datetime | None:
    """When the schedule may retry the cell (None: its record has no readable time, retry)."""
    failed = parse_iso(failure.failed)
    if failed is None:
        return None
    # 2**n grows without bound (timedelta overflows); 2**16 waits are past any cap anyway.
    wait = first_wait * 2 ** min(failed_in_a_row(failure) - 1, 16)
    return failed + min(wait, max(MAX_WAIT, first_wait))


def hold_back_failing(
    wanted: dict[Cell, int], failing: Mapping[Cell, CatalogFailure], first_wait_hours: float, now: datetime
) -> list[SkippedCell]:
    """Take the failing cells whose retry is not due out of `wanted` (cell: its published build);
    each becomes a skipped cell saying when the schedule retries it."""
    held = held_back(wanted, failing, timedelta(hours=first_wait_hours), now)
    for cell in held:
        del wanted[cell]
    return [
        SkippedCell(cell=cell_name(*cell), reason="failing", build=hold.failure.build, detail=hold.detail)
        for cell, hold in held.items()
    ]


def held_back(
    cells: Iterable[Cell], failing: Mapping[Cell, CatalogFailure], first_wait: timedelta, now: datetime
) -> dict[Cell, HeldBack]:
    """The cells among `cells` on record as failing whose retry is not due at `now`."""
    held: dict[Cell, HeldBack] = {}
    for cell in cells:
        failure = failing.get(cell)
        due = retry_from(failure, first_wait) if failure else None
        if failure and due and now < due:
            held[cell] = HeldBack(failure, failed_in_a_row(failure), due)
    return held
