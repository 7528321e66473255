"""Publish one runtime build a farm claimed: verify it (buildfarm.runtimes.verify), merge it
into versions.json's `runtimes` (the conditional write Python cells use), release its claim.
The runtime twin of buildfarm.publish.publish_cell; idempotent (a second call decides the same:
the merge keeps the higher build, a released claim stays released)."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Literal

from pydantic import BaseModel

from buildfarm.catalog.versions_json import RuntimeCell, update_runtimes
from buildfarm.claims import release_markers
from buildfarm.releases import iso
from buildfarm.runtimes.keys import runtime_cell_name, runtime_claim_key
from buildfarm.runtimes.verify import verify_runtime
from buildfarm.store import Store

log = logging.getLogger(__name__)


class RuntimeOutcome(BaseModel):
    cell: str
    build: int
    status: Literal["published", "failed"]
    reason: str = ""
    decided: str = ""


def publish_runtime(
    store: Store, cell: RuntimeCell, build: int, execution_id: str, now: datetime, failure: str = ""
) -> RuntimeOutcome:
    """Decide a claimed runtime build: published if it verifies, else failed with `failure`
    (why the build failed, when it did) or the verification's reason. The claim is released
    either way (its marker keeps the build number, so a failed number is not reused)."""
    name = runtime_cell_name(*cell)
    entry, reason = (None, failure) if failure else verify_runtime(store, cell, build, now)
    if entry is not None:
        update_runtimes(store, {cell: entry}, now)
        outcome = RuntimeOutcome(cell=name, build=build, status="published", decided=iso(now))
    else:
        log.warning("runtime %s build %d not published: %s", name, build, reason)
        outcome = RuntimeOutcome(cell=name, build=build, status="failed", reason=reason, decided=iso(now))
    release_markers(store, [runtime_claim_key(*cell)], execution_id=execution_id, now=now)
    return outcome
