"""The cloud farm's schedule, simulated: the real Recover, Plan, PublishCell and Finalize
(recover(), plan(), publish_cell(), publish()) over a directory store, on a simulated clock,
with a stand-in builder that takes simulated time and writes a real build (fake_build).

Used by tests/functions/test_convergence.py and benchmarks/plan_matrix.py (which puts
tests/ on sys.path and imports functions.convergence).

Each execution runs as the state machine does (DESIGN "Workflow"):
- it starts on the schedule (every `schedule_minutes`) with `{}`;
- Recover: recover() finalizes the open runs whose execution has ended;
- Plan: plan({}) claims at most the execution's budget (less the unfinished cells of the
  executions still running);
- the Map submits the planned items in order, `max_concurrency` at a time (per execution, as a
  Distributed Map's MaxConcurrency), to Batch, which runs them oldest first (at most
  `batch_capacity` jobs over all executions, if set); each job takes a pseudo-random number of
  simulated minutes and writes its build, then PublishCell runs;
- Finalize: publish() once the Map is done.
At its timeout an execution is stopped: jobs still running are lost (no build written) and
Finalize never runs. An execution whose number is in `failing_finalize` has a Finalize that
raises (the store refuses index.html). Either way the next execution's Recover finalizes it.
Whether an execution still runs (the Liveness) is the simulation's own knowledge, as Step
Functions' DescribeExecution is in the cloud. Nothing here replaces the farm's code.
"""

from __future__ import annotations

import collections
import contextlib
import heapq
import itertools
import os
import random
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from buildfarm.catalog import INDEX_KEY, published_builds, read_versions
from buildfarm.claims import CLAIMS_PREFIX
from buildfarm.config import FarmConfig
from buildfarm.plan import PlanItem, open_runs, plan
from buildfarm.platforms import load_registry
from buildfarm.policy import policy_platforms
from buildfarm.publish import BatchOutcome, publish, publish_cell
from buildfarm.recovery import recover
from buildfarm.releases import Release
from buildfarm.store import LocalStore, Store, StoreError

from .conftest import FAKE_SHA, fake_build, write_releases

START = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
# Same-time events: builds finish, then executions end, then the schedule starts the next one.
_CELL, _END, _START = 0, 1, 2
_DEFAULTS = FarmConfig.model_fields


@dataclass(frozen=True)
class Scenario:
    """One simulated deployment. The matrix is the newest `releases_per_series` releases of each
    of `series` (all live on START) x 10 live platforms x 2 arches: with 4 series, 80 cells per
    release per series; 25 -> 2,000 cells."""

    releases_per_series: int = 25
    series: tuple[str, ...] = ("3.14", "3.13", "3.12", "3.11")
    # The farm's defaults (FarmConfig): 20 slots, 24 h, 40 min.
    max_concurrency: int = _DEFAULTS["max_concurrency"].default
    execution_timeout_hours: float = _DEFAULTS["execution_timeout_hours"].default
    job_minutes_estimate: float = _DEFAULTS["job_minutes_estimate"].default
    max_cells_per_execution: int | None = None  # an explicit cap instead of the budget
    claim_ttl_seconds: int | None = None  # None: the execution timeout, as the stack sets it
    job_minutes: tuple[int, int] = (20, 40)  # each job takes a whole number of minutes in this range
    schedule_minutes: int = 60
    seed: int = 11
    failing_finalize: frozenset[int] = frozenset()  # execution numbers (1-based)
    max_executions: int = 2000
    # Jobs Batch runs at once over all executions (its compute environments); None: the Maps'
    # MaxConcurrency is the only limit (each execution's own).
    batch_capacity: int | None = None

    def versions(self) -> list[str]:
        """Patch numbers from 24 (or more) down: the seed catalog's own releases (3.13.15,
        3.13.5, 3.11.2, always in releases.json) are among them or older than all of them."""
        top = max(self.releases_per_series, 25) - 1
        return [
            f"{series}.{patch}"
            for series in self.series
            for patch in range(top, top - self.releases_per_series, -1)
        ]

    def config(self, store: Path | str) -> FarmConfig:
        """The farm's configuration for this scenario; the claim TTL is the execution timeout
        unless set, as the stack sets it (infra/functions.py)."""
        return FarmConfig.defaults(
            store=str(store),
            releases_url="http://127.0.0.1:9/never",  # python.org is the simulation's `upstream`
            releases_per_series=self.releases_per_series,
            max_concurrency=self.max_concurrency,
            execution_timeout_hours=self.execution_timeout_hours,
            job_minutes_estimate=self.job_minutes_estimate,
            max_cells_per_execution=self.max_cells_per_execution,
            claim_ttl_seconds=self.claim_ttl_seconds or int(self.execution_timeout_hours * 3600),
        )


class SimStore(LocalStore):
    """A directory store whose puts of `refuse` fail (a Finalize that raises), when set."""

    refuse: str | None = None

    def put(self, key: str, data: bytes, **kwargs: Any) -> str:
        if key == self.refuse:
            raise StoreError(f"simulated failure writing {key}")
        return super().put(key, data, **kwargs)


@dataclass
class Execution:
    number: int
    id: str
    started: datetime
    deadline: datetime
    budget: int = 0
    planned: int = 0
    pending: collections.deque[PlanItem] = field(default_factory=collections.deque)
    active: int = 0  # jobs running in Batch
    built: int = 0  # jobs that finished (their build written) before the execution ended
    lost: int = 0  # items cut off by the timeout (running or not started)
    ended: datetime | None = None
    end: str = "running"  # "finalized" | "finalize failed" | "timed out"
    recovered: list[str] = field(default_factory=list)  # runs its Recover finalized
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def duration(self) -> timedelta | None:
        return None if self.ended is None else self.ended - self.started


class FarmSimulation:
    """Run executions on the schedule until a condition holds; see the module docstring."""

    def __init__(self, store: SimStore, scenario: Scenario, start: datetime = START) -> None:
        self.store = store
        self.scenario = scenario
        self.config = scenario.config(store.location)
        self.now = start
        self.rng = random.Random(scenario.seed)
        self.executions: list[Execution] = []
        self.builds: collections.Counter[str] = collections.Counter()  # cell -> stand-in builds made
        self.published_at: dict[str, datetime] = {}  # cell -> when a publisher first published it
        self.upstream: list[tuple[datetime, Release]] = []  # python.org: (appears at, release)
        self.matrix_size = 0
        self._running: dict[str, bool] = {}
        self._events: list[tuple[datetime, int, int, Callable[[], None]]] = []
        self._queue: list[tuple[datetime, int, Execution, PlanItem]] = []  # submitted to Batch
        self._jobs = 0  # running in Batch
        self.peak_jobs = 0
        self._seq = itertools.count()
        write_releases(store, scenario.versions(), now=start)

    # -- what the farm's code asks the outside world ------------------------------------------

    def is_running(self, execution_id: str) -> bool | None:
        """The Liveness: True while the execution runs, False once it ended, None if unknown."""
        return self._running.get(execution_id)

    def fetch_releases(
        self, base_url: str, *, lowest_series: str, known: set[str], timeout: float
    ) -> dict[str, Release]:
        """python.org: the releases that have appeared by now and are not known yet."""
        return {r.version: r for at, r in self.upstream if at <= self.now and r.version not in known}

    def release(self, version: str, at: datetime) -> None:
        """`version` appears on python.org at `at`."""
        url = f"https://example.invalid/{version}/Python-{version}.tar.xz"
        entry = Release(version=version, sha256=FAKE_SHA, url=url, release_date=at.date().isoformat())
        self.upstream.append((at, entry))

    # -- the event loop ---------------------------------------------------------------------

    def _at(self, when: datetime, rank: int, action: Callable[[], None]) -> None:
        heapq.heappush(self._events, (when, rank, next(self._seq), action))

    def run(self, until: Callable[[FarmSimulation], bool], first_start: datetime | None = None) -> None:
        """Start executions on the schedule (from first_start, else now) until `until` holds
        after an event, or max_executions have started and ended."""
        if not any(rank == _START for _, rank, _, _ in self._events):
            self._at(first_start or self.now, _START, lambda: self._start(len(self.executions) + 1))
        while self._events:
            when, _, _, action = heapq.heappop(self._events)
            self.now = when
            action()
            if until(self):
                return
        raise AssertionError(f"no convergence after {len(self.executions)} executions")

    def _start(self, number: int) -> None:
        if number < self.scenario.max_executions:
            later = self.now + timedelta(minutes=self.scenario.schedule_minutes)
            self._at(later, _START, lambda: self._start(number + 1))
        hours = self.scenario.execution_timeout_hours
        execution = Execution(number, f"sim-{number:04d}", self.now, self.now + timedelta(hours=hours))
        self.executions.append(execution)
        self._running[execution.id] = True
        recovery = recover(
            self.store,
            self.config,
            self.now,
            is_running=self.is_running,
            own_execution_id=execution.id,
            signer=None,
        )
        execution.recovered = recovery.finalized
        self._note_published(recovery.published)
        result = plan(
            {},
            self.store,
            self.config,
            execution.id,
            self.now,
            fetch_releases=self.fetch_releases,
            is_running=self.is_running,
        )
        self.matrix_size = result.matrix_size
        execution.summary, execution.budget, execution.planned = (
            result.summary,
            result.budget,
            len(result.items),
        )
        self._map(execution, result.items)

    def _map(self, execution: Execution, items: list[PlanItem]) -> None:
        """The Distributed Map: submit max_concurrency items now, the next one as each ends."""
        execution.pending = collections.deque(items)
        self._at(execution.deadline, _END, lambda: self._stop(execution))
        for _ in range(min(self.scenario.max_concurrency, len(items))):
            self._submit(execution)
        if not items:
            self._at(self.now, _END, lambda: self._finalize(execution))
        self._dispatch()

    def _submit(self, execution: Execution) -> None:
        item = execution.pending.popleft()
        heapq.heappush(self._queue, (self.now, next(self._seq), execution, item))

    def _dispatch(self) -> None:
        """Batch: start queued jobs, oldest first, while the compute environment has room."""
        room = self.scenario.batch_capacity or len(self._queue) + self._jobs
        while self._queue and self._jobs < room:
            _, _, execution, item = heapq.heappop(self._queue)
            if execution.ended is not None:
                continue
            minutes = self.rng.randint(*self.scenario.job_minutes)
            self._jobs += 1
            execution.active += 1
            self.peak_jobs = max(self.peak_jobs, self._jobs)
            ends = self.now + timedelta(minutes=minutes)
            self._at(ends, _CELL, lambda execution=execution, item=item: self._job_done(execution, item))

    def _job_done(self, execution: Execution, item: PlanItem) -> None:
        """The stand-in builder's job ends: its build is in the store; then PublishCell."""
        if execution.ended is not None:
            return  # stopped meanwhile: the job was terminated, nothing was written
        self._jobs -= 1
        execution.active -= 1
        self.builds[item.cell] += 1
        execution.built += 1
        fake_build(self.store, item.spec)
        outcome = publish_cell(item, self.store, self.now, BatchOutcome(status="succeeded"), signer=None)
        if outcome.status == "published":
            self._note_published([item.cell])
        if execution.pending:
            self._submit(execution)
        elif not execution.active:
            self._finalize(execution)
        self._dispatch()

    def _finalize(self, execution: Execution) -> None:
        failing = execution.number in self.scenario.failing_finalize
        self.store.refuse = INDEX_KEY if failing else None
        try:
            result = publish(execution.summary, self.store, self.config, self.now, signer=None)
            self._note_published(result.published)
            execution.end = "finalized"
        except StoreError:
            execution.end = "finalize failed"
        finally:
            self.store.refuse = None
        self._ended(execution)

    def _stop(self, execution: Execution) -> None:
        """The execution times out: its running jobs are terminated, Finalize never runs."""
        if execution.ended is not None:
            return
        execution.lost = execution.active + len(execution.pending)
        self._jobs -= execution.active
        execution.end = "timed out"
        self._ended(execution)
        self._dispatch()

    def _ended(self, execution: Execution) -> None:
        execution.ended = self.now
        self._running[execution.id] = False

    def _note_published(self, cells: list[str]) -> None:
        for cell in cells:
            self.published_at.setdefault(cell, self.now)

    # -- conditions and results -------------------------------------------------------------

    def running(self) -> list[Execution]:
        return [e for e in self.executions if e.ended is None]

    def settled(self) -> bool:
        """Every cell of the matrix published, nothing running, no run left open."""
        return (
            self.matrix_size > 0
            and len(self.published_at) >= self.matrix_size
            and not self.running()
            and not open_runs(self.store)
        )

    def working(self) -> list[Execution]:
        """The executions that planned something."""
        return [e for e in self.executions if e.planned]

    def published_builds(self) -> dict[str, int]:
        """cell -> build, from versions.json."""
        document, _ = read_versions(self.store)
        return {"/".join(cell): build for cell, build in published_builds(document).items()}

    def claims(self) -> dict[str, dict[str, Any]]:
        return claim_markers(self.store)


def claim_markers(store: Store) -> dict[str, dict[str, Any]]:
    """Every claim marker in the store, by key."""
    return {info.key: store.read_json(info.key)[0] for info in store.list(CLAIMS_PREFIX)}


@contextlib.contextmanager
def scratch_directory() -> Iterator[Path]:
    """A directory for a simulated store, removed afterwards: in memory (/dev/shm) where there
    is one, so that the store's fsyncs cost nothing; else the system's temporary directory."""
    shm = Path("/dev/shm")
    where = str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None
    with tempfile.TemporaryDirectory(prefix="convergence-", dir=where) as directory:
        yield Path(directory)


def simulate(directory: Path, scenario: Scenario) -> FarmSimulation:
    """Run `scenario` on an empty store in `directory` until it has settled."""
    simulation = FarmSimulation(SimStore(directory), scenario)
    simulation.run(FarmSimulation.settled)
    return simulation


@dataclass
class ReleaseLatency:
    appeared: datetime
    published: datetime  # the last of its cells
    cells: int
    executions: int  # executions that built some of its cells

    @property
    def hours(self) -> float:
        return (self.published - self.appeared).total_seconds() / 3600


def release_to_published(directory: Path, scenario: Scenario, version: str) -> ReleaseLatency:
    """Converge `scenario`, then `version` appears on python.org one minute after a scheduled
    run has refreshed (the worst moment): the time until its last cell is published."""
    simulation = simulate(directory, scenario)
    last_start = simulation.executions[-1].started
    appeared = last_start + timedelta(minutes=1)
    simulation.release(version, appeared)
    before = len(simulation.executions)
    platforms, _ = policy_platforms(simulation.config, load_registry(), appeared.date())
    expected = len(platforms) * len(simulation.config.enabled_arches)

    def published(sim: FarmSimulation) -> bool:
        return sum(1 for cell in sim.published_at if cell.startswith(f"{version}/")) >= expected

    simulation.run(published)
    mine = {c: t for c, t in simulation.published_at.items() if c.startswith(f"{version}/")}
    builders = {e.number for e in simulation.executions[before:] if e.planned}
    return ReleaseLatency(appeared, max(mine.values()), len(mine), len(builders))
