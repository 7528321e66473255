"""The cloud's runtime plan items (the pure planning part of runtimes in the workflow): the
runtime cells a run builds, claimed, as items for a Map whose per-item Batch job runs
`buildfarm runtime build` on the cell's builder image, then PublishCell (kind "runtime").

Planned after the run's Python cells are published, as a local run does (buildfarm.farm): a
Plan-runtimes step between the Python Map and Finalize calls plan_runtime_items.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from buildfarm.claims import Liveness, unknown_liveness
from buildfarm.config import FarmConfig
from buildfarm.runtimes.definitions import RuntimeDefinition
from buildfarm.runtimes.farm_cells import ClaimedRuntime, RuntimeRunPlan, plan_run_runtimes
from buildfarm.store import Store


class RuntimeItem(BaseModel):
    """One runtime cell for the cloud: a Batch job on the job definition and queue Python cells
    of its platform and arch use, running `command` (an argv, never a shell line)."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["runtime"] = "runtime"
    cell: str  # <name>/<version>/<platform>/<arch>
    build: int
    python: dict[str, Any]  # {"version", "build"}: the newest published build it is planned on
    reason: str
    execution_id: str
    command: list[str]
    job_definition: str
    job_queue_arch: str


def runtime_command(claimed: ClaimedRuntime, store: Store) -> list[str]:
    """`buildfarm runtime build` of a claimed cell at the claim's build number."""
    name, version, platform, arch = claimed.item.cell
    return [
        "buildfarm", "runtime", "build", name, "--platform", platform, "--arch", arch,
        "--runtime-version", version, "--build", str(claimed.build), "--store", store.location,
    ]  # fmt: skip


def plan_runtime_items(
    store: Store,
    config: FarmConfig,
    definitions: list[RuntimeDefinition],
    where: set[tuple[str, str]],
    execution_id: str,
    now: datetime,
    *,
    dry_run: bool = False,
    is_running: Liveness = unknown_liveness,
) -> tuple[list[RuntimeItem], RuntimeRunPlan]:
    """The runtime cells of `where` ((platform, arch) pairs) to build, claimed by execution_id
    (nothing claimed in a dry run), as items; and the runtime plan (waiting, current, held)."""
    runtimes = plan_run_runtimes(
        store, definitions, where, execution_id=execution_id, now=now,
        ttl_seconds=config.claim_ttl_seconds, dry_run=dry_run, is_running=is_running,
    )  # fmt: skip
    items = [
        RuntimeItem(
            cell=claimed.name,
            build=claimed.build,
            python={"version": claimed.item.python.version, "build": claimed.item.python.build},
            reason=claimed.item.reason,
            execution_id=execution_id,
            command=runtime_command(claimed, store),
            job_definition=f"{claimed.item.cell[2]}-{claimed.item.cell[3]}",
            job_queue_arch=claimed.item.cell[3],
        )
        for claimed in runtimes.claimed
    ]
    return items, runtimes
