"""The whole farm on one machine: the cloud workflow (plan -> build every cell -> publish)
with a local store and the local runners standing in for Batch.

Plan and publish are the very functions the Lambdas call; this module only adds what
Step Functions does in the cloud: run the planned cells (bounded concurrency), survive
interruption, and recover the cells of a run that died (its claims, its finished builds).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from buildfarm.config import FarmConfig
from buildfarm.plan import Plan, PlanItem, plan
from buildfarm.platforms import Registry, load_registry
from buildfarm.policy import policy_platforms
from buildfarm.publish import BatchOutcome, PublishResult, publish, publish_cell
from buildfarm.recovery import local_execution_id, local_liveness, recover
from buildfarm.runners import RunnerUnavailable, select_runner
from buildfarm.runners.base import BuildResult, Runner
from buildfarm.store import Store
from buildfarm.workflow_input import parse_workflow_input

log = logging.getLogger(__name__)

CellState = Literal["queued", "building", "built", "failed", "published"]


@dataclass
class CellProgress:
    cell: str
    build: int
    runner: str
    state: CellState = "queued"
    phase: str = ""
    started: float | None = None
    finished: float | None = None
    detail: str = ""

    @property
    def elapsed(self) -> float:
        if self.started is None:
            return 0.0
        return (self.finished or time.monotonic()) - self.started


@dataclass
class RunReport:
    execution_id: str
    plan: Plan | None
    runners: dict[str, str]
    unbuildable: dict[str, str]
    cells: dict[str, CellProgress] = field(default_factory=dict)
    published: PublishResult | None = None
    recovered: list[str] = field(default_factory=list)
    interrupted: bool = False

    @property
    def failed(self) -> list[CellProgress]:
        return [c for c in self.cells.values() if c.state == "failed"]


Listener = Callable[[CellProgress], None]


def choose_runners(
    platforms: list[str], arches: list[str], requested: str
) -> tuple[dict[tuple[str, str], Runner], dict[str, str]]:
    """(platform, arch) -> runner for what this machine can build; platform/arch -> why not."""
    runners: dict[tuple[str, str], Runner] = {}
    unbuildable: dict[str, str] = {}
    for platform in platforms:
        for arch in arches:
            try:
                runners[(platform, arch)] = select_runner(platform, requested, arch)
            except RunnerUnavailable as error:
                unbuildable[f"{platform}/{arch}"] = str(error)
    return runners, unbuildable


def recover_dead_runs(store: Store, config: FarmConfig, now: datetime) -> list[str]:
    """Finalize the runs of this host whose process is gone (killed, machine rebooted): what
    they finished is published, the rest failed and its claims released, so a new run neither
    rebuilds their finished cells nor waits for their claims to expire (buildfarm.recovery).
    Returns the cells those runs published."""
    return recover(store, config, now, is_running=local_liveness).published


@contextmanager
def _terminate_on_signals() -> Iterator[None]:
    """SIGTERM/SIGHUP become KeyboardInterrupt in the main thread, like Ctrl-C."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    if threading.current_thread() is not threading.main_thread():
        yield  # signals can only be handled in the main thread
        return
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _stop_child_builds() -> None:
    """Ask every build we started to stop: drivers run in their own sessions (so a terminal's
    Ctrl-C does not kill them mid-write); SIGTERM lets each record its failure and exit."""
    me = str(os.getpid())
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[1] == me:  # ppid
            pid = int(stat.parent.name)
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGTERM)


def run_farm(
    request: dict[str, Any],
    store: Store,
    config: FarmConfig,
    *,
    runner: str = "auto",
    jobs: int = 1,
    log_dir: Path,
    listener: Listener | None = None,
    registry: Registry | None = None,
    now: datetime | None = None,
) -> RunReport:
    """Plan, build and publish on this machine. Cells no runner here can build are left out
    of the plan (so nothing claims them) and reported with the reason."""
    registry = registry or load_registry()
    now = now or datetime.now(UTC)
    execution_id = local_execution_id(now)
    notify = listener or (lambda progress: None)

    # Not named: the live platforms, as plan() would choose them (named ones are built as named).
    platforms = list(request.get("platforms") or policy_platforms(config, registry, now.date())[0])
    arches = list(request.get("arches") or config.enabled_arches)
    # Validate before touching the machine or the store (plan validates again, the same way).
    if parse_workflow_input(request, config, registry).dry_run:
        # Plans only (nothing claimed or written); no runner is chosen, nothing is built.
        return RunReport(execution_id, plan(request, store, config, execution_id, now), {}, {})
    runners, unbuildable = choose_runners(platforms, arches, runner)
    report = RunReport(
        execution_id=execution_id,
        plan=None,
        runners={f"{p}/{a}": r.name for (p, a), r in runners.items()},
        unbuildable=unbuildable,
    )
    # Keep the request's order: cells are built in it.
    buildable = [p for p in platforms if any(p == q for q, _ in runners)]
    if not buildable:
        return report

    report.recovered = recover_dead_runs(store, config, now)
    narrowed = {
        **request,
        "platforms": buildable,
        "arches": [a for a in arches if any(a == b for _, b in runners)],
    }
    report.plan = the_plan = plan(narrowed, store, config, execution_id, now, is_running=local_liveness)
    items = [item for item in the_plan.items if (item.spec.platform, item.spec.arch) in runners]

    for item in items:
        progress = CellProgress(
            item.cell, item.spec.build, runners[(item.spec.platform, item.spec.arch)].name
        )
        report.cells[item.cell] = progress
        notify(progress)
    log_dir.mkdir(parents=True, exist_ok=True)
    lock = threading.Lock()

    def build(item: PlanItem) -> None:
        progress = report.cells[item.cell]
        if report.interrupted:
            return
        with lock:
            progress.state, progress.started = "building", time.monotonic()
        notify(progress)

        def on_phase(phase: str, seconds: float) -> None:
            progress.phase = phase
            notify(progress)

        log_path = log_dir / f"{item.cell.replace('/', '-')}-{item.spec.build}.log"
        try:
            with log_path.open("w") as output:
                result: BuildResult = runners[(item.spec.platform, item.spec.arch)].run(
                    item.spec, on_phase=on_phase, output=output
                )
        except Exception as error:  # e.g. the chroot could not be made: the cell fails, others go on
            result = BuildResult(False, "runner", f"{type(error).__name__}: {error}", None, {})
        progress.finished = time.monotonic()
        if report.interrupted:
            return  # stopped half-way: Finalize decides it (failed, "interrupted")
        # Published as soon as it is built, as the cloud's PublishCell does.
        where = f" in {result.failed_phase}" if result.failed_phase else ""
        batch = BatchOutcome(
            status="succeeded" if result.ok else "failed",
            error=None if result.ok else f"failed{where}: {result.reason or 'see log'}",
        )
        if result.ok:
            progress.state = "built"
            notify(progress)
        outcome = publish_cell(item, store, datetime.now(UTC), batch)
        progress.state = outcome.status
        if outcome.status == "failed":
            progress.detail = f"{outcome.reason} (log: {log_path})"
        notify(progress)

    try:
        with _terminate_on_signals(), ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            futures = [pool.submit(build, item) for item in items]
            try:
                for future in futures:
                    while not future.done():
                        time.sleep(0.2)
            except KeyboardInterrupt:
                report.interrupted = True
                _stop_child_builds()
                for future in futures:
                    future.cancel()
                for future in futures:
                    if not future.cancelled():
                        future.result()
    finally:
        # Finalize: cells not yet decided (interrupted) are failed and their claims released,
        # so a rerun builds exactly what is missing; the derived files are written once.
        report.published = publish(the_plan.summary, store, config, now=datetime.now(UTC))
        for failed in report.published.failed:
            progress = report.cells[failed.cell]
            if progress.state != "failed":
                progress.state = "failed"
                progress.detail = "interrupted" if report.interrupted else failed.reason
                notify(progress)
    return report
