"""Recovery: finish the runs whose execution ended before its Finalize (killed, timed out,
stopped, or Finalize itself failed), so nothing finished is ever lost and no claim blocks.

Every run with something to build has a marker under runs/ from Plan until Finalize
(buildfarm.plan). Before planning, recover() asks whether each open run's execution still
runs, and finalizes the ended ones with the very finalize_run Finalize runs
(buildfarm.finalize): the run's runtime items first (a runtime build with a manifest that
PublishRuntime never decided is verified and published, else failed), then its Python
cells: a build is published only if its manifest records
the spec the run's plan holds for it (execution id included) and every artifact verifies; the
rest is failed and its claim released.

Whether an execution still runs is a Liveness (buildfarm.claims): in the cloud, Step Functions
answers (buildfarm.handlers.executions); on one machine, the process table (local_liveness);
otherwise the claim's expiry decides.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import socket
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from buildfarm import clock
from buildfarm.attest.signing import Signer
from buildfarm.claims import Liveness
from buildfarm.config import FarmConfig
from buildfarm.finalize import finalize_run
from buildfarm.layout import plan_record_key, run_marker_key
from buildfarm.plan import safe_id
from buildfarm.plan_items import close_run, open_runs
from buildfarm.platforms import Registry
from buildfarm.releases import parse_iso
from buildfarm.store import Store, StoreError, StoreNotFound

log = logging.getLogger(__name__)

# A local run's execution id records who runs it: local-<host>-<pid>-<process>-<UTC time>,
# <process> a fingerprint of the process's start time (/proc/<pid>/stat field 22, clock ticks
# since boot) and the boot (/proc/sys/kernel/random/boot_id). A later run on this host tells
# from it whether that very process still runs, however it was started; a pid that is gone,
# reused by another process, or from before a reboot is a dead run. Whole ids stay within
# plan.MAX_ID (80): host <= 40, pid <= 7 digits (Linux pid_max <= 2**22), fingerprint 8.
_LOCAL_EXECUTION = re.compile(
    r"local-(?P<host>[A-Za-z0-9._-]+)-(?P<pid>[0-9]{1,7})(-(?P<process>[0-9a-f]{8}))?"
    r"-(?P<time>[0-9]{8}T[0-9]{6}Z)",
    re.ASCII,
)
_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def _host() -> str:
    return safe_id(socket.gethostname())[:40] or "host"


def process_start_ticks(pid: int) -> int | None:
    """When the process started (clock ticks after boot: /proc/<pid>/stat field 22); None if
    there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 2, the command in parentheses, may hold spaces and ')': count from the last ')'.
    fields = stat.rpartition(")")[2].split()
    try:
        return int(fields[22 - 3])
    except (IndexError, ValueError):
        return None


def boot_id() -> str:
    try:
        return _BOOT_ID.read_text().strip()
    except OSError:
        return ""


def process_fingerprint(start_ticks: int, boot: str) -> str:
    """8 hex digits naming one process of one boot: its start time and the boot id."""
    return hashlib.sha256(f"{boot}/{start_ticks}".encode()).hexdigest()[:8]


def local_execution_id(now: datetime | None = None, pid: int | None = None) -> str:
    """This process's execution id (or another process's of this host, by pid)."""
    now = now or clock.now()
    pid = os.getpid() if pid is None else pid
    ticks = process_start_ticks(pid)
    process = f"-{process_fingerprint(ticks, boot_id())}" if ticks is not None else ""
    return f"local-{_host()}-{pid}{process}-{now.strftime('%Y%m%dT%H%M%SZ')}"


def local_liveness(execution_id: str) -> bool | None:
    """A local run of this host: does the process that made it still run? True or False.
    Another host's run, or anything else: None (nobody here can tell: its claim's expiry does)."""
    match = _LOCAL_EXECUTION.fullmatch(execution_id)
    if not match or match["host"] != _host():
        return None
    ticks = process_start_ticks(int(match["pid"]))
    if ticks is None:
        return False  # no such process
    if match["process"] is None:
        return None  # an id from before fingerprints: a live pid may be anyone's
    # Another process under the same pid, or the same numbers in another boot: not that run.
    return match["process"] == process_fingerprint(ticks, boot_id())


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
    signer: Signer | None,
) -> Recovery:
    """Finalize every open run whose execution has ended (signing with signer, as
    buildfarm.publish.publish does; None: unsigned). One listing when none is open."""
    now = now or clock.now()
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
            finalized = _finalize(store, config, run_id, summary, now, recovery, registry, signer)
        except Exception:  # one run's failure must not stop the recovery of the others
            log.exception("cannot finalize run %s (retried next time)", run_id)
            continue
        if finalized:
            recovery.finalized.append(run_id)
    return recovery


def _finalize(
    store: Store,
    config: FarmConfig,
    run_id: str,
    summary: dict[str, Any],
    now: datetime,
    recovery: Recovery,
    registry: Registry | None,
    signer: Signer | None,
) -> bool:
    """Finalize one ended run (its runtime items, then its Python cells) and close it; False
    (and the run left open, retried next time) if it cannot be read or decided now."""
    try:
        run = finalize_run(summary, store, config, now, registry=registry, signer=signer)
    except (StoreError, ValueError, KeyError) as error:  # e.g. a plan from an older schema
        log.warning("cannot finalize run %s: %s (retried next time)", run_id, error)
        return False
    published, failed = run.published, [f["cell"] for f in run.failed]
    log.info("recovered run %s: %d published, %d failed", run_id, len(published), len(failed))
    recovery.published += published
    recovery.failed += failed
    return True
