"""What a plan hands on, below the planner: the Python items a Plan writes (PlanItem,
read_plan_items), the open-run markers (runs/<execution>.json, open_runs/close_run) and the
cells' recorded outcomes (plans/<execution>/outcomes/, recorded_outcomes).

Publishing, verifying and recovery read these; they live apart from buildfarm.plan because the
planner also plans runtime cells (buildfarm.runtimes.cloud_items), whose publishing imports
buildfarm.publish and buildfarm.verify: with these in plan.py, plan -> runtimes -> publish ->
plan was an import cycle.
"""

from __future__ import annotations

from contextlib import suppress
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from buildfarm.layout import RUNS_PREFIX, outcomes_prefix, parse_outcome_key, run_marker_id, run_marker_key
from buildfarm.models import BuildSpec
from buildfarm.store import Store, StoreNotFound


class SkippedCell(BaseModel):
    """A cell of the matrix a plan does not build, and why."""

    cell: str
    reason: Literal["published", "claimed", "failing"]
    build: int  # the published build, the build the other execution claimed, or the failed one
    detail: str


# runs/<execution>.json (layout.run_marker_key) exists from Plan until Finalize: an open run.
# Recovery finalizes the open runs whose execution has ended; Plan counts the unfinished cells
# of the running ones.
def open_runs(store: Store) -> list[str]:
    """The execution ids of the runs not yet finalized: one listing (usually empty)."""
    return sorted(
        run_id for info in store.list(RUNS_PREFIX) if (run_id := run_marker_id(info.key)) is not None
    )


def close_run(store: Store, plan_id: str) -> None:
    with suppress(StoreNotFound):
        store.delete(run_marker_key(plan_id))


class PlanItem(BaseModel):
    """One element of the plan's items.json (the Distributed Map's items)."""

    model_config = ConfigDict(extra="forbid")
    cell: str
    spec: BuildSpec
    job_definition: str
    job_queue_arch: str

    def as_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def read_plan_items(store: Store, location: dict[str, str]) -> list[PlanItem]:
    """The items a Plan wrote, from its summary's "items" location."""
    raw, _ = store.read_json(store.key_from_location(location))
    if not isinstance(raw, list):
        raise ValueError(f"plan items at {location} are not a JSON array")
    return [PlanItem.model_validate(item) for item in raw]


def recorded_outcomes(store: Store, plan_id: str) -> dict[str, Literal["published", "failed"]]:
    """cell -> status of every outcome on record for a plan: one listing per 1,000 cells."""
    found: dict[str, Literal["published", "failed"]] = {}
    for info in store.list(outcomes_prefix(plan_id)):
        parsed = parse_outcome_key(plan_id, info.key)
        if parsed is None:
            continue
        status, cell = parsed
        # A cell decided twice (failed, then published by a later attempt) is published.
        if found.get(cell) != "published":
            found[cell] = status  # type: ignore[assignment]
    return found
