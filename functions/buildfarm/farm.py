"""The whole farm on one machine: the cloud workflow (plan -> build every cell -> publish)
with a local store and the local runners standing in for Batch.

Plan and publish are the very functions the Lambdas call; this module only adds what
Step Functions does in the cloud: run the planned cells (bounded concurrency), survive
interruption, and recover the cells of a run that died (its claims, its finished builds).

When runtime definitions are given, the run's runtime cells (buildfarm.runtimes) come after
its Python cells are published: planned from versions.json, claimed, built here one at a time
and published into versions.json's `runtimes`, then the derived files are rewritten once more.
Only this machine's own platform and arch (runtime_cells_here): a runtime is built in this
process, and the wheels uv picks are the ones this machine's glibc takes.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from buildfarm import clock
from buildfarm.attest.farm_signer import signer_for
from buildfarm.attest.signing import Signer
from buildfarm.catalog import regenerate_derived
from buildfarm.catalog.derived import store_public_url
from buildfarm.claims import release_claims
from buildfarm.config import FarmConfig
from buildfarm.plan import Plan, PlanItem, plan
from buildfarm.platforms import Registry, canonical_arch, load_registry
from buildfarm.policy import policy_platforms
from buildfarm.publish import BatchOutcome, PublishResult, publish, publish_cell
from buildfarm.recovery import local_execution_id, local_liveness, recover
from buildfarm.runners import RunnerUnavailable, host_arch, host_platform_id, select_runner
from buildfarm.runners.base import BuildResult, Runner, discard_log, resume_builds, stop_builds
from buildfarm.runtimes.definitions import RuntimeDefinition
from buildfarm.runtimes.farm_cells import RuntimeRunPlan, build_claimed, plan_run_runtimes
from buildfarm.runtimes.publish import publish_runtime
from buildfarm.store import Store, StoreError
from buildfarm.workflow_input import parse_workflow_input

log = logging.getLogger(__name__)

CellState = Literal["queued", "building", "built", "failed", "published"]


@dataclass
class CellProgress:
    """What one cell of a run is doing. phase: the last phase the build finished; step, done,
    total, unit: what the phase running now reported ("make", 212, 640, "objects"; total None
    when the driver cannot tell)."""

    cell: str
    build: int
    runner: str
    state: CellState = "queued"
    phase: str = ""
    started: float | None = None
    finished: float | None = None
    detail: str = ""
    step: str = ""
    done: int = 0
    total: int | None = None
    unit: str = ""

    @property
    def elapsed(self) -> float:
        if self.started is None:
            return 0.0
        return (self.finished or time.monotonic()) - self.started

    def phase_done(self, phase: str) -> None:
        """The driver finished a phase: the step it reported on is over."""
        self.phase = phase
        self.step, self.done, self.total, self.unit = "", 0, None, ""

    def reported(self, step: str, done: int, total: int | None, unit: str) -> None:
        """The driver's progress line for the running step."""
        self.step, self.done, self.total, self.unit = step, done, total, unit


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
    # The store failed (disk full, read-only): no further cell is started; raised by run_farm
    # if Finalize could not decide the run either.
    store_error: StoreError | None = None
    # The runtime cells (None: runtimes left out); those claimed are in `cells` too.
    runtimes: RuntimeRunPlan | None = None

    @property
    def published_runtimes(self) -> list[str]:
        claimed = [claimed.name for claimed in self.runtimes.claimed] if self.runtimes else []
        return [name for name in claimed if self.cells[name].state == "published"]

    @property
    def failed(self) -> list[CellProgress]:
        return [c for c in self.cells.values() if c.state == "failed"]


Listener = Callable[[CellProgress], None]


def runtime_cells_here(platforms: list[str], arches: list[str], registry: Registry) -> set[tuple[str, str]]:
    """The (platform, arch) of the request whose runtime cells this machine builds: its own."""
    here = (host_platform_id(registry), host_arch())
    return {(platform, canonical_arch(arch)) for platform in platforms for arch in arches} & {here}


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


def recover_dead_runs(store: Store, config: FarmConfig, now: datetime, signer: Signer | None) -> list[str]:
    """Finalize the runs of this host whose process is gone (killed, machine rebooted): what
    they finished is published, the rest failed and its claims released, so a new run neither
    rebuilds their finished cells nor waits for their claims to expire (buildfarm.recovery).
    Returns the cells those runs published (signed by signer, as this run's are)."""
    return recover(store, config, now, is_running=local_liveness, signer=signer).published


@contextmanager
def terminate_on_signals() -> Iterator[None]:
    """SIGTERM/SIGHUP become KeyboardInterrupt in the main thread, like Ctrl-C; SIGINT too where
    it was ignored (a shell starts `cmd &` so, and Python then leaves it ignored)."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    if threading.current_thread() is not threading.main_thread():
        yield  # signals can only be handled in the main thread
        return
    signals = [signal.SIGTERM, signal.SIGHUP]
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signals.append(signal.SIGINT)
    previous = {sig: signal.signal(sig, handler) for sig in signals}
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
                if int(fields[2]) == pid:  # pgrp: it leads its group (drivers, roots' commands)
                    os.killpg(pid, signal.SIGTERM)
                else:  # e.g. a docker build in preflight
                    os.kill(pid, signal.SIGTERM)


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
    runtimes: list[RuntimeDefinition] | None = None,
) -> RunReport:
    """Plan, build and publish on this machine; cells no runner here can build are left out of
    the plan (nothing claims them) and reported. Then, with `runtimes`, the runtime cells of the
    run's platforms and arches. Raises StoreError if the store failed (claims released first)."""
    registry = registry or load_registry()
    now = now or clock.now()
    execution_id = local_execution_id(now)
    notify = listener or (lambda progress: None)
    # Not named: the live platforms, as plan() would choose them (named ones are built as named).
    platforms = list(request.get("platforms") or policy_platforms(config, registry, now.date())[0])
    # Validate before touching the machine or the store (plan validates again, the same way).
    parsed = parse_workflow_input(request, config, registry)
    arches = list(parsed.arches or config.enabled_arches)  # canonical, as the plan's: amd64 is x86_64
    if parsed.dry_run:
        # Plans only (nothing claimed or written); no runner is chosen, nothing is built.
        where = runtime_cells_here(platforms, arches, registry)
        return _dry_run(request, store, config, execution_id, now, runtimes, where)
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
    signer = signer_for(config)  # the run's, for every cell it publishes (None: unsigned)
    report.recovered = recover_dead_runs(store, config, now, signer)
    narrowed = {
        **request,
        "platforms": buildable,
        "arches": [a for a in arches if any(a == b for _, b in runners)],
    }
    report.plan = the_plan = plan(narrowed, store, config, execution_id, now, is_running=local_liveness)
    items = _cells_to_build(report, the_plan, runners, notify)
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
        _build_all(_CellBuilder(report, runners, store, log_dir, notify, signer), items, jobs)
    finally:
        _finalize(report, the_plan, store, config, notify, signer)
    if report.store_error is not None:
        raise report.store_error
    if runtimes is not None and not report.interrupted:
        here = runtime_cells_here(platforms, arches, registry)
        _run_runtimes(report, store, config, runtimes, here, notify, registry, signer)
    return report


def _cells_to_build(
    report: RunReport, the_plan: Plan, runners: dict[tuple[str, str], Runner], notify: Listener
) -> list[PlanItem]:
    """The plan's items a runner here builds, each announced (queued) in the report."""
    items = [item for item in the_plan.items if (item.spec.platform, item.spec.arch) in runners]
    for item in items:
        where = (item.spec.platform, item.spec.arch)
        report.cells[item.cell] = CellProgress(item.cell, item.spec.build, runners[where].name)
        notify(report.cells[item.cell])
    return items


def _dry_run(
    request: dict[str, Any],
    store: Store,
    config: FarmConfig,
    execution_id: str,
    now: datetime,
    runtimes: list[RuntimeDefinition] | None,
    where: set[tuple[str, str]],
) -> RunReport:
    """The plan of a dry run, and of its runtime cells (given definitions); nothing claimed."""
    report = RunReport(execution_id, plan(request, store, config, execution_id, now), {}, {})
    if runtimes is not None:
        report.runtimes = plan_run_runtimes(
            store, runtimes, where, execution_id=execution_id, now=now,
            ttl_seconds=config.claim_ttl_seconds, dry_run=True,
        )  # fmt: skip
    return report


def _run_runtimes(
    report: RunReport,
    store: Store,
    config: FarmConfig,
    definitions: list[RuntimeDefinition],
    where: set[tuple[str, str]],
    notify: Listener,
    registry: Registry,
    signer: Signer | None,
) -> None:
    """The runtime cells of the run's platforms and arches, after its Python cells are
    published: planned, claimed, built here one at a time, published; then the derived files
    again (the status page lists runtimes). Ctrl-C fails the cells not yet built, releasing
    their claims."""
    report.runtimes = runtimes = plan_run_runtimes(
        store, definitions, where, execution_id=report.execution_id, now=clock.now(),
        ttl_seconds=config.claim_ttl_seconds, dry_run=False, is_running=local_liveness,
    )  # fmt: skip
    pending = list(runtimes.claimed)
    for claimed in pending:
        report.cells[claimed.name] = CellProgress(claimed.name, claimed.build, "here")
        notify(report.cells[claimed.name])
    try:
        with terminate_on_signals():
            while pending:
                progress = report.cells[pending[0].name]
                progress.state, progress.started = "building", time.monotonic()
                notify(progress)
                outcome = build_claimed(store, pending[0], report.execution_id, clock.now, signer=signer)
                pending.pop(0)
                progress.finished, progress.state, progress.detail = (
                    time.monotonic(),
                    outcome.status,
                    outcome.reason,
                )
                notify(progress)
    except KeyboardInterrupt:
        report.interrupted = True
        for claimed in pending:
            publish_runtime(
                store,
                claimed.item.cell,
                claimed.build,
                report.execution_id,
                clock.now(),
                "interrupted",
                signer=signer,
            )
            progress = report.cells[claimed.name]
            progress.state, progress.detail = "failed", "interrupted"
            notify(progress)
    if report.published_runtimes:
        public_url = store_public_url(store, config.public_base_url)
        regenerate_derived(store, registry, config.enabled_platforms, public_url, clock.now(), signer=signer)


@dataclass
class _CellBuilder:
    """Builds one planned cell with its runner and publishes it as soon as it is built, as the
    cloud's BuildCell and PublishCell do; called from the pool's threads."""

    report: RunReport
    runners: dict[tuple[str, str], Runner]
    store: Store
    log_dir: Path
    notify: Listener
    signer: Signer | None  # the config's; publish_cell signs each cell with it
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, item: PlanItem) -> None:
        progress = self.report.cells[item.cell]
        if self.report.interrupted or self.report.store_error is not None:
            return  # left to Finalize: failed, claim released
        with self.lock:
            progress.state, progress.started = "building", time.monotonic()
        self.notify(progress)
        log_path = self.log_dir / f"{item.cell.replace('/', '-')}-{item.spec.build}.log"
        result = self._build(item, progress, log_path)
        progress.finished = time.monotonic()
        if self.report.interrupted:
            return  # stopped half-way: Finalize decides it (failed, "interrupted")
        self._publish(item, progress, result, log_path)

    def _build(self, item: PlanItem, progress: CellProgress, log_path: Path) -> BuildResult:
        def on_phase(phase: str, seconds: float) -> None:
            progress.phase_done(phase)
            self.notify(progress)

        def on_progress(step: str, done: int, total: int | None, unit: str) -> None:
            progress.reported(step, done, total, unit)
            self.notify(progress)

        runner = self.runners[(item.spec.platform, item.spec.arch)]
        try:
            with log_path.open("w") as output:
                result = runner.run(item.spec, on_phase=on_phase, output=output, on_progress=on_progress)
        except Exception as error:  # e.g. the chroot could not be made: the cell fails, others go on
            return BuildResult(False, "runner", f"{type(error).__name__}: {error}", None, {})
        return keep_full_log(result, log_path.with_suffix(".full.log"))

    def _publish(self, item: PlanItem, progress: CellProgress, result: BuildResult, log_path: Path) -> None:
        where = f" in {result.failed_phase}" if result.failed_phase else ""
        batch = BatchOutcome(
            status="succeeded" if result.ok else "failed",
            error=None if result.ok else f"failed{where}: {result.reason or 'see log'}",
        )
        if result.ok:
            progress.state = "built"
            self.notify(progress)
        try:
            outcome = publish_cell(item, self.store, clock.now(), batch, signer=self.signer)
        except StoreError as error:
            # Disk full or read-only: stop starting cells; Finalize decides this one if it can.
            progress.detail = f"{batch.error}; store: {error}" if batch.error else f"store: {error}"
            with self.lock:
                self.report.store_error = self.report.store_error or error
            return
        progress.state = outcome.status
        if outcome.status == "failed":
            full = f", full log: {result.log_path}" if result.log_path else ""
            progress.detail = f"{outcome.reason} (log: {log_path}{full})"
        self.notify(progress)


def keep_full_log(result: BuildResult, kept: Path) -> BuildResult:
    """The driver's full log moved from the runner's temporary directory (removed) to kept,
    beside the run's other logs: a run of many cells leaves nothing behind in the temporary
    directory."""
    if result.log_path is None:
        return result
    try:
        shutil.move(result.log_path, kept)
    except OSError:
        return result
    discard_log(result.log_path)  # the runner's buildfarm-log-* directory, now empty
    return replace(result, log_path=kept)


def _build_all(builder: _CellBuilder, items: list[PlanItem], jobs: int) -> None:
    """Build the items, `jobs` at a time; Ctrl-C or SIGTERM stops the builds under way."""
    report = builder.report
    try:
        with terminate_on_signals(), ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            futures = [pool.submit(builder, item) for item in items]
            try:
                for future in futures:
                    while not future.done():
                        time.sleep(0.2)
            except KeyboardInterrupt:
                report.interrupted = True
                stop_builds()  # before the signals: a preflight ending now starts no driver
                _stop_child_builds()
                for future in futures:
                    future.cancel()
    finally:
        resume_builds()  # every build of this run has returned
    for future in futures:
        if not future.cancelled():
            future.result()  # a builder's own bug is raised, not lost


def _finalize(
    report: RunReport,
    the_plan: Plan,
    store: Store,
    config: FarmConfig,
    notify: Listener,
    signer: Signer | None,
) -> None:
    """Finalize: cells not yet decided (interrupted, not started) are failed and their claims
    released, so a rerun builds exactly what is missing; the derived files are written once.
    If the store fails here too, this run's claims are released all the same (a delete where
    the disk is full) and its run marker stays open: a later run's recovery finalizes it."""
    try:
        report.published = publish(the_plan.summary, store, config, now=clock.now(), signer=signer)
    except StoreError as error:
        report.store_error = error
        _release_run_claims(store, the_plan, report.execution_id)
        for progress in report.cells.values():
            if progress.state not in ("published", "failed"):
                progress.state, progress.detail = "failed", progress.detail or f"store: {error}"
                notify(progress)
        return
    report.store_error = None  # whatever failed during the builds, Finalize has decided every cell
    decided = {name: "published" for name in report.published.published}
    decided.update({failed.cell: failed.reason for failed in report.published.failed})
    for name, reason in decided.items():
        progress = report.cells[name]
        state: CellState = "published" if reason == "published" else "failed"
        if progress.state != state:
            progress.state = state
            if state == "failed":
                progress.detail = "interrupted" if report.interrupted else reason
            notify(progress)


def _release_run_claims(store: Store, the_plan: Plan, execution_id: str) -> None:
    cells = [(item.spec.version, item.spec.platform, item.spec.arch) for item in the_plan.items]
    try:
        release_claims(store, cells, execution_id=execution_id, now=clock.now())
    except StoreError as error:
        log.warning("cannot release the claims of %s: %s", execution_id, error)
