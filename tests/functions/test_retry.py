"""The schedule's backoff on failing cells (buildfarm.retry), alone and through plan + publish."""

from __future__ import annotations

from datetime import timedelta

import pytest

from buildfarm.catalog import read_versions
from buildfarm.catalog.versions_json import CatalogFailure, failing_cells
from buildfarm.plan import plan
from buildfarm.publish import publish
from buildfarm.releases import iso
from buildfarm.retry import MAX_WAIT, held_back, retry_from

from .conftest import NOW

CELL = ("3.13.5", "debian-12", "x86_64")
ONE_PLATFORM = {"platforms": ["debian-12"], "arches": ["x86_64"]}  # no versions: the schedule's rules
CELLS = 3  # the seed catalog's newest two live 3.13 releases and 3.11.2 on 2026-11-22


def failure(build: int, since_build: int, failed: str = iso(NOW)) -> CatalogFailure:
    return CatalogFailure(build=build, reason="selftest: test_ssl failed", failed=failed,
                          since_build=since_build, since=failed)  # fmt: skip


@pytest.mark.parametrize(
    ("build", "since_build", "wait"),
    [(1, 1, timedelta(hours=6)), (2, 1, timedelta(hours=12)), (4, 2, timedelta(hours=24)),
     (6, 1, MAX_WAIT), (900, 1, MAX_WAIT)],
)  # fmt: skip
def test_the_wait_doubles_with_each_failure_in_a_row_up_to_a_week(build, since_build, wait):
    assert retry_from(failure(build, since_build), timedelta(hours=6)) == NOW + wait


def test_a_failure_without_a_readable_time_is_retried():
    record = failure(1, 1, failed="yesterday")
    assert retry_from(record, timedelta(hours=6)) is None
    assert held_back([CELL], {CELL: record}, timedelta(hours=6), NOW) == {}


def test_only_failing_cells_not_yet_due_are_held_back():
    other = ("3.13.5", "rhel-9", "x86_64")
    failing = {CELL: failure(1, 1), other: failure(1, 1, failed=iso(NOW - timedelta(hours=7)))}
    held = held_back([CELL, other, ("3.12.11", "debian-12", "x86_64")], failing, timedelta(hours=6), NOW)
    assert list(held) == [CELL]
    assert held[CELL].retry_from == NOW + timedelta(hours=6)
    assert "retries it from 2026-11-22T16:00:00Z" in held[CELL].detail


def _fail_scheduled_run(store, config, execution_id, now):
    """A `{}`-style run whose builds produced nothing: Finalize records every cell failing.
    Returns the build numbers by cell."""
    result = plan(ONE_PLATFORM, store, config, execution_id, now)
    assert (
        len(publish(result.summary, store, config, now=now, signer=None).failed) == len(result.items) == CELLS
    )
    return {item.cell: item.spec.build for item in result.items}


def test_the_schedule_backs_off_a_failing_cell_and_a_named_version_does_not(local_store, config):
    assert set(_fail_scheduled_run(local_store, config, "exec-1", NOW).values()) == {1}

    held = plan(ONE_PLATFORM, local_store, config, "exec-2", NOW + timedelta(hours=1))
    assert held.counts["planned"] == 0 and held.counts["skipped_failing"] == CELLS
    skipped = next(s for s in held.skipped if s.cell == "3.13.5/debian-12/x86_64")
    assert skipped.reason == "failing" and skipped.build == 1
    assert "retries it from 2026-11-22T16:00:00Z" in skipped.detail

    # Due after 6 hours; failing again doubles the wait to 12.
    later = NOW + timedelta(hours=6)
    assert set(_fail_scheduled_run(local_store, config, "exec-3", later).values()) == {2}
    assert failing_cells(read_versions(local_store)[0])[CELL].since_build == 1
    assert (
        plan(ONE_PLATFORM, local_store, config, "exec-4", later + timedelta(hours=11)).counts["planned"] == 0
    )
    due = plan({**ONE_PLATFORM, "dry_run": True}, local_store, config, "exec-5", later + timedelta(hours=12))
    assert due.counts["planned"] == CELLS

    # Break glass rebuilds at once: a named version, or force.
    for request in ({**ONE_PLATFORM, "versions": ["3.13.5"]}, {**ONE_PLATFORM, "force": True}):
        named = plan({**request, "dry_run": True}, local_store, config, "exec-6", later + timedelta(hours=1))
        assert named.counts["planned"] >= 1 and named.counts["skipped_failing"] == 0


def test_the_backoff_is_configured(local_store, config):
    _fail_scheduled_run(local_store, config, "exec-1", NOW)
    hourly = config.model_copy(update={"failed_retry_hours": 1})
    at = NOW + timedelta(hours=1)
    assert (
        plan({**ONE_PLATFORM, "dry_run": True}, local_store, hourly, "exec-2", at).counts["planned"] == CELLS
    )
    assert plan({**ONE_PLATFORM, "dry_run": True}, local_store, config, "exec-2", at).counts["planned"] == 0
