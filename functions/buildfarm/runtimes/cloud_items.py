"""Runtime cells in the cloud workflow: Plan claims a run's runtime cells (plan_runtime_items,
on the Python builds published when it plans; a runtime of a Python this run builds is planned
by the next run) and writes them as items (plans/<execution>/runtime-items.json) for the
BuildRuntimes Map, whose per-item Batch job runs `buildfarm runtime build ... --build N` on the
cell's builder image (as the image's command: its build.py runs it with the newest published
Python >= 3.11 of the cell's platform and arch and the image's buildfarm wheel,
builder_image/driver/runtime_job.py); PublishRuntime decides each item (decide_runtime_item: publish_runtime,
its outcome recorded under plans/<execution>/runtime-outcomes/), and Finalize decides the items
PublishRuntime did not (finalize_runtime_items).
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from buildfarm.attest.signing import Signer
from buildfarm.batch_errors import describe_batch_error
from buildfarm.catalog import regenerate_derived
from buildfarm.catalog.derived import store_public_url
from buildfarm.catalog.versions_json import RuntimeCell
from buildfarm.claims import Liveness, unknown_liveness
from buildfarm.config import FarmConfig
from buildfarm.digests import Sha256
from buildfarm.layout import runtime_outcome_key
from buildfarm.platforms import load_registry
from buildfarm.publish import BatchOutcome, CellOutcome
from buildfarm.runtimes.definitions import RuntimeDefinition, default_definitions, load_definitions
from buildfarm.runtimes.farm_cells import ClaimedRuntime, RuntimeRunPlan, plan_run_runtimes
from buildfarm.runtimes.publish import publish_runtime
from buildfarm.store import Store, StoreNotFound

DEFINITIONS_ENV = "BUILDFARM_RUNTIMES"


def farm_definitions() -> list[RuntimeDefinition] | None:
    """The runtime definitions a farm plans: $BUILDFARM_RUNTIMES's, else the repository's
    runtimes/ (or the copy the package carries, as the Lambda bundle does); None when there is
    no such directory (a farm without runtimes). A bad definition raises DefinitionError."""
    named = os.environ.get(DEFINITIONS_ENV)
    directory = Path(named) if named else default_definitions()
    return load_definitions(directory) if named or directory.is_dir() else None


class RuntimeItem(BaseModel):
    """One runtime cell for the cloud: a Batch job on the queue Python cells of its platform and
    arch use, and on that platform and arch's runtime job definition (the builder's image with a
    job role of its own, infra.job_roles: a runtime's build code never runs as the Python
    builder), running `command` (an argv, never a shell line)."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["runtime"] = "runtime"
    cell: str  # <name>/<version>/<platform>/<arch>
    build: int
    python: dict[str, Any]  # {"version", "build"}: the newest published build it is planned on
    reason: str
    execution_id: str
    command: list[str]
    # The planned lock's sha256: publishing holds the build's manifest to it. None in an item
    # written before it (the manifest's lock is then not compared).
    lock_sha256: Sha256 | None = None
    # <platform>-<arch>, as a Python item's: the BuildRuntimes Map submits it to the runtime job
    # definition of that name (infra.batch.job_definition_name), whatever the item says.
    job_definition: str
    job_queue_arch: str

    @property
    def runtime_cell(self) -> RuntimeCell:
        name, version, platform, arch = self.cell.split("/")
        return name, version, platform, arch


def runtime_command(claimed: ClaimedRuntime, store: Store, execution_id: str) -> list[str]:
    """`buildfarm runtime build` of a claimed cell at the claim's build number, for the
    execution that claimed it."""
    name, version, platform, arch = claimed.item.cell
    return [
        "buildfarm", "runtime", "build", name, "--platform", platform, "--arch", arch,
        "--runtime-version", version, "--build", str(claimed.build),
        "--execution-id", execution_id, "--store", store.location,
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
    return [runtime_item(claimed, store, execution_id) for claimed in runtimes.claimed], runtimes


def runtime_item(claimed: ClaimedRuntime, store: Store, execution_id: str) -> RuntimeItem:
    """The item of a claimed runtime cell: its Batch job runs on the (runtime) job definition and
    the queue of the cell's platform and arch."""
    _, _, platform, arch = claimed.item.cell
    return RuntimeItem(
        cell=claimed.name,
        build=claimed.build,
        python={"version": claimed.item.python.version, "build": claimed.item.python.build},
        reason=claimed.item.reason,
        execution_id=execution_id,
        command=runtime_command(claimed, store, execution_id),
        lock_sha256=claimed.item.lock_sha256,
        job_definition=f"{platform}-{arch}",
        job_queue_arch=arch,
    )


def read_runtime_items(store: Store, location: dict[str, str]) -> list[RuntimeItem]:
    """The runtime items a Plan wrote, from its summary's runtimes.items location."""
    raw, _ = store.read_json(store.key_from_location(location))
    if not isinstance(raw, list):
        raise ValueError(f"runtime items at {location} are not a JSON array")
    return [RuntimeItem.model_validate(item) for item in raw]


def decide_runtime_item(
    store: Store, item: RuntimeItem, now: datetime, failure: str = "", *, signer: Signer | None
) -> CellOutcome:
    """Publish a runtime item's build (or fail it with `failure`, why its job failed) and record
    the outcome for Finalize."""
    outcome = publish_runtime(
        store, item.runtime_cell, item.build, item.execution_id, now, failure, signer=signer,
        planned_lock=item.lock_sha256,
    )  # fmt: skip
    store.put_json(runtime_outcome_key(item.execution_id, item.cell), outcome.model_dump(mode="json"))
    return outcome


def runtime_job_failure(batch: BatchOutcome) -> str:
    """Why a runtime item's Batch job failed, as its outcome records it ("" if it succeeded)."""
    if batch.status == "succeeded":
        return ""
    return f"build job failed: {describe_batch_error(batch.error) if batch.error else 'no detail'}"[:500]


def _recorded(store: Store, item: RuntimeItem) -> CellOutcome | None:
    try:
        raw, _ = store.read_json(runtime_outcome_key(item.execution_id, item.cell))
    except StoreNotFound:
        return None
    return CellOutcome.model_validate(raw)


def finalize_runtime_items(
    store: Store, summary: dict[str, Any], config: FarmConfig, now: datetime, *, signer: Signer | None
) -> list[CellOutcome]:
    """Every runtime item's outcome: recorded ones read back, the others decided now (a job
    that ended without PublishRuntime: its build verifies and is published, or it fails). A
    plan without Python items gets its derived files (the status page lists runtimes) here,
    since Finalize's buildfarm.publish regenerates them only for Python cells."""
    runtimes = summary.get("runtimes") or {}
    if summary.get("dry_run") or not runtimes.get("planned"):
        return []
    items = read_runtime_items(store, runtimes["items"])
    outcomes = [
        _recorded(store, item) or decide_runtime_item(store, item, now, signer=signer) for item in items
    ]
    if not (summary.get("counts") or {}).get("planned"):
        public_url = store_public_url(store, config.public_base_url)
        regenerate_derived(store, load_registry(), config.enabled_platforms, public_url, now, signer=signer)
    return outcomes
