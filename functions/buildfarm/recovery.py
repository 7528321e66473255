"""Recovery: finish the runs whose execution ended before its Finalize (killed, timed out,
stopped, or Finalize itself failed), so nothing finished is ever lost and no claim blocks.

Every run with something to build has a marker under runs/ from Plan until Finalize
(buildfarm.plan). Before planning, recover() asks whether each open run's execution still
runs, and finalizes the ended ones with the very publish() their Finalize would have run: a
build is published only if its manifest records the spec the run's plan holds for it
(execution id included) and every artifact verifies; the rest is failed and its claim released.

Whether an execution still runs is a Liveness (buildfarm.claims): in the cloud, Step Functions
answers (buildfarm.handlers.executions); on one machine, the process table (local_liveness);
otherwise the claim's expiry decides.
"""

from __future__ import annotations

import logging
import os
import re
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from buildfarm.claims import Liveness
from buildfarm.config import FarmConfig
from buildfarm.layout import plan_record_key, run_marker_key
from buildfarm.plan import close_run, open_runs, safe_id
from buildfarm.platforms import Registry
from buildfarm.publish import publish
from buildfarm.releases import parse_iso
from buildfarm.store import Store, StoreError, StoreNotFound

log = logging.getLogger(__name__)

# local-<host>-<pid>-<UTC time>: enough for a later run on this host to tell that we died.
_LOCAL_EXECUTION = re.compile(
    r"local-(?P<host>[A-Za-z0-9._-]+)-(?P<pid>[0-9]{1,10})-(?P<time>[0-9]{8}T[0-9]{6}Z)", re.ASCII
)


def _host() -> str:
    return safe_id(socket.gethostname())[:40] or "host"


def local_execution_id(now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    return f"local-{_host()}-{os.getpid()}-{now.strftime('%Y%m%dT%H%M%SZ')}"


def _pid_is_a_live_buildfarm(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"buildfarm" in cmdline


def local_liveness(execution_id: str) -> bool | None:
    """A local run of this host: is its process alive? Anything else: None (cannot tell)."""
    match = _LOCAL_EXECUTION.fullmatch(execution_id)
    if not match or match["host"] != _host():
        return None
    pid = int(match["pid"])
    return pid == os.getpid() or _pid_is_a_live_buildfarm(pid)


def is_dead_local_execution(execution_id: str) -> bool:
    """True if execution_id is a local run on this host whose process is gone."""
    return local_liveness(execution_id) is False


@dataclass
class Recovery:
    finalized: list[str] = field(default_factory=list)  # execution ids whose runs were closed
    published: list[str] = field(default_factory=list)  # cells published by those runs
    failed: list[str] = field(default_factory=list)  # cells those runs did not build
    running: list[str] = field(default_factory=list)  # open runs still going


def _has_ended(store: Store, run_id: str, is_running: Liveness, config: FarmConfig, now: datetime) -> bool:
    state = is_running(run_id)
    if state is not None:
        return not state
    # Nobody can tell (e.g. another host's local run): ended once its claims would have expired.
    try:
        marker, _ = store.read_json(run_marker_key(run_id))
        created = parse_iso(marker.get("created")) if isinstance(marker, dict) else None
    except (StoreError, ValueError):
        created = None
    return created is None or created + timedelta(seconds=config.claim_ttl_seconds) <= now


def recover(
    store: Store,
    config: FarmConfig,
    now: datetime | None = None,
    *,
    is_running: Liveness,
    own_execution_id: str = "",
    registry: Registry | None = None,
) -> Recovery:
    """Finalize every open run whose execution has ended. One listing when none is open."""
    now = now or datetime.now(UTC)
    recovery = Recovery()
    for run_id in open_runs(store):
        if run_id == own_execution_id:
            continue
        if not _has_ended(store, run_id, is_running, config, now):
            recovery.running.append(run_id)
            continue
        try:
            summary, _ = store.read_json(plan_record_key(run_id))
        except StoreNotFound:
            # Plan died before writing its plan: nothing was built from it; its claims are taken
            # over as soon as a planner sees that the execution ended.
            close_run(store, run_id)
            recovery.finalized.append(run_id)
            continue
        except StoreError as error:
            log.warning("cannot read the plan of run %s: %s (retried next time)", run_id, error)
            continue
        try:
            result = publish(summary, store, config, now, registry=registry)
        except (StoreError, ValueError, KeyError) as error:  # e.g. a plan from an older schema
            log.warning("cannot finalize run %s: %s (retried next time)", run_id, error)
            continue
        log.info(
            "recovered run %s: %d published, %d failed", run_id, len(result.published), len(result.failed)
        )
        recovery.finalized.append(run_id)
        recovery.published += result.published
        recovery.failed += [f.cell for f in result.failed]
    return recovery
