"""Finalizing a run (DESIGN "Workflow"): what the workflow's Finalize does once after its Maps,
and what Recover does for a run whose execution ended before its Finalize did.

Its runtime items first (buildfarm.runtimes.cloud_items.finalize_runtime_items), so that the
derived files the Python cells' publish regenerates list the runtimes it publishes; then its
Python cells (buildfarm.publish.publish, which closes a run that planned Python cells); a run of
runtime cells only, or of none, is closed here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from buildfarm.attest.signing import Signer
from buildfarm.config import FarmConfig
from buildfarm.plan_items import close_run
from buildfarm.platforms import Registry
from buildfarm.publish import CellOutcome, PublishResult, publish
from buildfarm.runtimes.cloud_items import finalize_runtime_items
from buildfarm.store import Store

# The most cells (or runs) a state's output names, Finalize's failed cells and Recover's runs
# alike: payloads stay bounded however large the run (the rest are counted, not named).
MAX_NAMED = 50


@dataclass(frozen=True)
class FinalizedRun:
    """A finalized run's outcomes: its Python cells (with their counts) and its runtime cells."""

    cells: PublishResult
    runtimes: list[CellOutcome]

    @property
    def published(self) -> list[str]:
        """Every cell published, Python cells first."""
        return self.cells.published + [o.cell for o in self.runtimes if o.status == "published"]

    @property
    def failed(self) -> list[dict[str, str]]:
        """Every cell failed, with its reason, Python cells first."""
        return [f.model_dump() for f in self.cells.failed] + [
            {"cell": o.cell, "reason": o.reason} for o in self.runtimes if o.status == "failed"
        ]

    def summary(self) -> dict[str, Any]:
        """Finalize's output. It stays small however large the run: the counts are complete, the
        published and failed lists name at most MAX_NAMED each (every cell's outcome stays on
        record under plans/<execution>/outcomes/)."""
        counts = {
            **self.cells.counts,
            "runtimes_published": sum(1 for o in self.runtimes if o.status == "published"),
            "runtimes_failed": sum(1 for o in self.runtimes if o.status == "failed"),
        }
        return {"published": self.published[:MAX_NAMED], "failed": self.failed[:MAX_NAMED], "counts": counts}


def finalize_run(
    plan_summary: dict[str, Any],
    store: Store,
    config: FarmConfig,
    now: datetime,
    *,
    registry: Registry | None = None,
    signer: Signer | None,
) -> FinalizedRun:
    """Decide every item of the run that is not decided yet, regenerate the derived files and
    close the run (see the module docstring). Signs with signer (None: unsigned)."""
    runtimes = finalize_runtime_items(store, plan_summary, config, now, signer=signer)
    cells = publish(plan_summary, store, config, now, registry=registry, signer=signer)
    python_cells = (plan_summary.get("counts") or {}).get("planned", 1)
    if not plan_summary.get("dry_run") and not python_cells:
        close_run(store, str(plan_summary["plan_id"]))
    return FinalizedRun(cells, runtimes)
