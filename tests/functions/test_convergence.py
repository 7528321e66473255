"""Convergence and recovery: the real plan(), publish_cell(), publish() and recover() on a
simulated schedule (functions.convergence), and executions stopped half-way.

Every PublishCell rewrites versions.json, so a simulation's cost grows with the square of the
matrix: the 2,000-cell schedule takes about a minute on 2 cores and is marked slow; the
other scenarios use 160-400 cells. benchmarks/plan_matrix.py measures the same runs.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from buildfarm.catalog import INDEX_KEY
from buildfarm.claims import Claimant, ClaimOutcome, claim_cell
from buildfarm.plan import PlanItem, open_runs, plan, run_marker_key
from buildfarm.publish import publish, publish_cell
from buildfarm.recovery import recover
from buildfarm.store import StoreError

from .conftest import NOW, fake_build, write_releases
from .convergence import (
    FarmSimulation,
    Scenario,
    SimStore,
    claim_markers,
    release_to_published,
    scratch_directory,
)

# 5 newest releases of 4 series x 10 live platforms x 2 arches (400 cells; 25: 2,000), 20 slots,
# a 4 h timeout (so many executions are needed); Finalize raises in executions 3 and 7.
SCHEDULE = Scenario(releases_per_series=5, execution_timeout_hours=4, failing_finalize=frozenset({3, 7}))
# Four platforms of 3.13.5 x 2 arches, named: eight cells.
EIGHT_CELLS = {"versions": ["3.13.5"], "platforms": ["debian-12", "rhel-9", "ubuntu-2404", "rhel-10"]}


@pytest.fixture
def scratch() -> Iterator[Path]:
    with scratch_directory() as directory:
        yield directory


def assert_settled(simulation: FarmSimulation) -> dict[str, int]:
    """Every cell published exactly once and built once, every claim released, no run open.
    Returns cell -> published build."""
    published = simulation.published_builds()
    assert len(published) == simulation.matrix_size
    assert set(simulation.builds) == set(published)
    assert Counter(simulation.builds.values()) == {1: len(published)}, "a cell was built twice"
    # One published outcome per cell over all executions' records.
    outcomes = Counter(
        info.key.split("/outcomes/published/", 1)[1].removesuffix(".json")
        for info in simulation.store.list("plans/")
        if "/outcomes/published/" in info.key
    )
    assert outcomes == Counter(list(published)), "a cell was published twice, or not at all"
    claims = simulation.claims()
    assert len(claims) == len(published)
    assert [key for key, claim in claims.items() if not claim["released"]] == []
    assert open_runs(simulation.store) == []
    assert simulation.store.exists(INDEX_KEY)
    return published


def assert_recovered_later(simulation: FarmSimulation, ended: set[int]) -> None:
    """Each execution in `ended` (numbers) was finalized by the Recover of a later one."""
    for number in ended:
        execution = simulation.executions[number - 1]
        assert any(execution.id in later.recovered for later in simulation.executions[number:]), number


def assert_within_budget(simulation: FarmSimulation) -> None:
    """Every execution finished every job it planned before its timeout, within its budget,
    and no cell was planned twice."""
    config, executions = simulation.config, simulation.executions
    timeout = timedelta(hours=simulation.scenario.execution_timeout_hours)
    for execution in executions:
        assert execution.end in ("finalized", "finalize failed"), execution
        assert execution.lost == 0 and execution.built == execution.planned, execution
        assert execution.duration is not None and execution.duration <= timeout, execution
        assert execution.planned <= execution.budget <= config.cells_per_execution, execution
    assert len(simulation.working()) >= simulation.matrix_size // config.cells_per_execution
    assert sum(e.planned for e in executions) == simulation.matrix_size


@pytest.mark.parametrize(
    "releases_per_series", [5, pytest.param(25, marks=pytest.mark.slow, id="2000-cells")]
)
def test_the_hourly_schedule_converges_within_each_executions_budget(scratch, releases_per_series):
    scenario = dataclasses.replace(SCHEDULE, releases_per_series=releases_per_series)
    simulation = FarmSimulation(SimStore(scratch), scenario)
    simulation.run(FarmSimulation.settled)
    config, executions = simulation.config, simulation.executions
    assert simulation.matrix_size == releases_per_series * 80  # 4 series x 10 platforms x 2 arches
    assert config.cells_per_execution == 60  # 20 slots x 4 h / 40 min x 0.5
    assert_within_budget(simulation)
    # Later runs started while earlier ones were still building, and claimed only what was left
    # of the budget.
    assert any(0 < e.budget < config.cells_per_execution for e in executions)
    assert {e.number for e in executions if e.end == "finalize failed"} == {3, 7}
    assert_recovered_later(simulation, {3, 7})
    assert set(assert_settled(simulation).values()) == {1}


def test_executions_over_their_time_budget_lose_only_their_unfinished_jobs(scratch):
    # An explicit cap far over what 10 slots finish in 2 h: every execution times out.
    scenario = Scenario(
        releases_per_series=2,
        max_concurrency=10,
        execution_timeout_hours=2,
        max_cells_per_execution=100,
    )
    simulation = FarmSimulation(SimStore(scratch), scenario)
    simulation.run(FarmSimulation.settled)
    timed_out = {e.number for e in simulation.executions if e.end == "timed out"}
    assert timed_out and sum(e.lost for e in simulation.executions) > 0
    assert_recovered_later(simulation, timed_out)
    published = assert_settled(simulation)
    assert simulation.matrix_size == 160
    # A cell whose job was cut off is built by a later run at the next number; nothing built
    # was lost (the stand-in counted one build per cell).
    assert max(published.values()) > 1


def test_claims_of_a_running_execution_hold_past_their_expiry(scratch):
    # The default claim TTL (4 h) is shorter than a 24 h execution: 90 cells on 5 slots take
    # about 9 h. The hourly runs meanwhile must not take over the cells still queued in it.
    scenario = Scenario(releases_per_series=2, max_concurrency=5, claim_ttl_seconds=4 * 3600)
    simulation = FarmSimulation(SimStore(scratch), scenario)
    simulation.run(FarmSimulation.settled)
    first = simulation.executions[0]
    assert first.planned == 90 and first.duration is not None and first.duration > timedelta(hours=8)
    assert set(assert_settled(simulation).values()) == {1}


def test_a_claim_is_taken_over_when_its_execution_ended_or_else_when_it_expired(scratch):
    store, cell = SimStore(scratch), ("3.13.5", "debian-12", "x86_64")
    running: dict[str, bool] = {"long": True}

    def claim(execution_id: str, now: datetime) -> ClaimOutcome:
        return claim_cell(
            store, cell, Claimant(execution_id, execution_id, now, 3600, running.get), published_build=0
        )

    first = claim("long", NOW)
    assert (first.status, first.build) == ("claimed", 1)
    later = NOW + timedelta(hours=5)  # past the claim's expiry; "long" still runs
    held = claim("next", later)
    assert (held.status, held.holder) == ("held", "long")
    running["long"] = False
    taken = claim("next", later)
    assert (taken.status, taken.build) == ("claimed", 2)
    # Nobody can tell whether "next" still runs: its claim holds until it expires.
    assert claim("other", later + timedelta(minutes=59)).status == "held"
    taken = claim("other", later + timedelta(hours=1))
    assert (taken.status, taken.build) == ("claimed", 3)


def test_a_new_release_is_published_by_the_next_scheduled_run(scratch):
    latency = release_to_published(scratch, Scenario(releases_per_series=2), "3.14.25")
    assert latency.cells == 20 and latency.executions == 1


# -- Recovery: the real steps, one execution stopped half-way ---------------------------------


def build(store: SimStore, items: list[PlanItem], builds: Counter[str]) -> None:
    """The stand-in builder: each item's build written to the store, counted."""
    for item in items:
        fake_build(store, item.spec)
        builds[item.cell] += 1


def published_cells(store: SimStore) -> dict[str, int]:
    document, _ = store.read_json("versions.json")
    return {
        f"{version}/{platform}/{arch}": entry["build"]
        for version, platforms in document["builds"].items()
        for platform, arches in platforms.items()
        for arch, entry in arches.items()
    }


def test_a_stopped_execution_is_published_by_the_next_without_rebuilding(scratch, config):
    store, builds = SimStore(scratch), Counter()
    write_releases(store, ["3.13.5"])
    running = {"stopped": True}
    first = plan(EIGHT_CELLS, store, config, "stopped", NOW, is_running=running.get)
    items = first.items
    assert len(items) == 8
    # 5 of 8 jobs finished; PublishCell ran for 3 of them when StopExecution came; no Finalize.
    build(store, items[:5], builds)
    for item in items[:3]:
        publish_cell(item, store, NOW + timedelta(minutes=30), signer=None)
    running["next"] = True
    later = NOW + timedelta(hours=1)
    # While it runs, its run is left alone and its claims hold.
    assert (
        recover(store, config, later, is_running=running.get, own_execution_id="next", signer=None).finalized
        == []
    )
    peek = plan({**EIGHT_CELLS, "dry_run": True}, store, config, "peek", later, is_running=running.get)
    assert peek.items == [] and peek.counts["skipped_claimed"] == 5
    running["stopped"] = False

    recovery = recover(store, config, later, is_running=running.get, own_execution_id="next", signer=None)
    assert recovery.finalized == ["stopped"]
    assert sorted(recovery.published) == sorted(item.cell for item in items[:5])
    assert sorted(recovery.failed) == sorted(item.cell for item in items[5:])
    assert published_cells(store) == {item.cell: 1 for item in items[:5]}

    second = plan(EIGHT_CELLS, store, config, "next", later, is_running=running.get)
    assert {item.cell: item.spec.build for item in second.items} == {item.cell: 2 for item in items[5:]}
    build(store, second.items, builds)
    for item in second.items:
        publish_cell(item, store, later + timedelta(minutes=40), signer=None)
    publish(second.summary, store, config, later + timedelta(minutes=41), signer=None)
    assert Counter(builds.values()) == {1: 8}
    assert published_cells(store) == {**{i.cell: 1 for i in items[:5]}, **{i.cell: 2 for i in items[5:]}}
    assert all(claim["released"] for claim in claim_markers(store).values())
    assert open_runs(store) == []


def test_a_finalize_that_raises_is_finished_by_the_next_execution(scratch, config):
    store, builds = SimStore(scratch), Counter()
    write_releases(store, ["3.13.5"])
    running = {"failed": True, "next": True}
    first = plan(EIGHT_CELLS, store, config, "failed", NOW, is_running=running.get)
    build(store, first.items, builds)
    for item in first.items[:6]:  # the last two PublishCells failed too: Finalize decides them
        publish_cell(item, store, NOW + timedelta(minutes=40), signer=None)
    store.refuse = INDEX_KEY
    with pytest.raises(StoreError):
        publish(first.summary, store, config, NOW + timedelta(minutes=41), signer=None)
    store.refuse = None
    running["failed"] = False  # the execution failed in Finalize
    assert open_runs(store) == ["failed"] and store.exists(run_marker_key("failed"))
    assert not store.exists(INDEX_KEY)

    later = NOW + timedelta(hours=1)
    recovery = recover(store, config, later, is_running=running.get, own_execution_id="next", signer=None)
    assert recovery.finalized == ["failed"] and recovery.failed == []
    assert sorted(recovery.published) == sorted(item.cell for item in first.items)
    assert store.exists(INDEX_KEY) and open_runs(store) == []
    second = plan(EIGHT_CELLS, store, config, "next", later, is_running=running.get)
    assert second.items == [] and second.counts["skipped_published"] == 8
    assert Counter(builds.values()) == {1: 8}
    assert published_cells(store) == {item.cell: 1 for item in first.items}
