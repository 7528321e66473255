"""The planner: expansion, skipping, claims, build numbers, dry run, store-call budget."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from datetime import timedelta

import pytest
from runtime_definitions import SVC_TOML, write_svc_definitions

from buildfarm.catalog import parse_cell
from buildfarm.claims import claim_key, release_claims
from buildfarm.layout import outcome_key
from buildfarm.models import BuildSpec
from buildfarm.plan import items_key, plan, read_plan_items, safe_id
from buildfarm.runtimes.cloud_items import decide_runtime_item
from buildfarm.runtimes.definitions import RuntimeDefinition, load_definition
from buildfarm.runtimes.keys import runtime_claim_key

from .conftest import (
    NOW,
    READ_OPERATIONS,
    REAL_3135_SHA256,
    all_keys,
    count_s3_calls,
    fake_build,
    fake_versions,
    read_json,
    write_published_matrix,
    write_releases,
)

TWO_PLATFORMS = {"versions": ["3.13.5"], "platforms": ["debian-12", "rhel-9"]}


def test_plan_claims_cells_and_writes_items(local_store, config):
    config = config.model_copy(
        update={"source_mirror": "http://mirror.test/ftp/python", "optimization": "none"}
    )
    result = plan(TWO_PLATFORMS, local_store, config, "exec-1", NOW)
    assert result.counts == {
        "cells": 4,
        "planned": 4,
        "skipped_published": 0,
        "skipped_claimed": 0,
        "skipped_failing": 0,
        "deferred": 0,
    }
    assert result.summary["items"] == {"bucket": "", "key": "plans/exec-1/items.json"}
    items = read_json(local_store, items_key("exec-1"))
    assert [item["cell"] for item in items] == [
        "3.13.5/debian-12/x86_64",
        "3.13.5/debian-12/aarch64",
        "3.13.5/rhel-9/x86_64",
        "3.13.5/rhel-9/aarch64",
    ]
    first = items[0]
    assert first["job_definition"] == "debian-12-x86_64" and first["job_queue_arch"] == "x86_64"
    spec = BuildSpec.model_validate(first["spec"])
    assert spec.build == 1
    assert spec.source.url == "http://mirror.test/ftp/python/3.13.5/Python-3.13.5.tar.xz"
    assert spec.source.sha256 == REAL_3135_SHA256
    assert spec.prefix == "/opt/python/3.13.5"
    assert spec.optimization == "none"
    assert spec.store == local_store.location
    assert spec.artifact_dir == "builds/3.13.5/debian-12/x86_64/1"
    claim = read_json(local_store, claim_key("3.13.5", "debian-12", "x86_64"))
    assert claim["execution_id"] == "exec-1" and claim["build"] == 1
    assert claim["expires_at"] == "2026-11-22T14:00:00Z"  # now + 4 h default TTL
    record = read_json(local_store, "plans/exec-1/plan.json")
    assert record["counts"]["planned"] == 4 and record["request"]["platforms"] == ["debian-12", "rhel-9"]
    assert [i.cell for i in read_plan_items(local_store, result.summary["items"])] == [
        i["cell"] for i in items
    ]


def test_schedule_expands_policy_platforms_and_arches(local_store, config, registry):
    write_releases(local_store, ["3.13.5", "3.12.11", "3.12.10", "3.12.9", "3.8.20"])
    result = plan({"dry_run": True}, local_store, config, "e", NOW)
    # The newest 2 of each live series (the seed adds 3.13.15, 3.11.2 and 3.9.2; 3.9 ended
    # 2025-10-31; 3.8 is below the lowest series) x the 10 platforms live on NOW x 2 arches.
    assert result.versions == ["3.13.15", "3.13.5", "3.12.11", "3.12.10", "3.11.2"]
    live = registry.live_platforms(NOW.date())
    assert len(live) == 10 and "debian-11" not in live and "opensuse-160" in live
    assert result.counts["cells"] == 5 * 10 * 2 == 100
    assert {i.cell.split("/")[1] for i in result.items} == set(live)


def test_dry_run_writes_nothing(local_store, config):
    write_releases(local_store, ["3.13.5"])
    local_store.put_json(claim_key("3.13.5", "rhel-9", "aarch64"), {"bad": "marker"})
    before = all_keys(local_store)
    result = plan({**TWO_PLATFORMS, "dry_run": True}, local_store, config, "dry", NOW)
    assert result.counts["planned"] == 4 and result.dry_run and result.summary["dry_run"] is True
    assert all_keys(local_store) == before


def test_dry_run_does_not_save_a_refreshed_catalog(local_store, config):
    assert list(local_store.list("")) == []
    plan({"dry_run": True}, local_store, config, "dry", NOW)  # seed + failed refresh: not saved
    assert list(local_store.list("")) == []


def test_published_cells_are_skipped_and_force_rebuilds_with_next_number(local_store, config):
    first = plan(TWO_PLATFORMS, local_store, config, "exec-1", NOW)
    from buildfarm.publish import publish

    for item in first.items:
        fake_build(local_store, item.spec)
    publish(first.summary, local_store, config, now=NOW, signer=None)

    again = plan(TWO_PLATFORMS, local_store, config, "exec-2", NOW)
    assert again.counts == {
        "cells": 4,
        "planned": 0,
        "skipped_published": 4,
        "skipped_claimed": 0,
        "skipped_failing": 0,
        "deferred": 0,
    }
    assert again.skipped[0].detail == "published build 1"

    forced = plan({**TWO_PLATFORMS, "force": True}, local_store, config, "exec-3", NOW)
    assert [i.spec.build for i in forced.items] == [2, 2, 2, 2]
    assert forced.items[0].spec.artifact_dir == "builds/3.13.5/debian-12/x86_64/2"


def test_failed_build_numbers_are_not_reused(local_store, config):
    first = plan({**TWO_PLATFORMS, "arches": ["x86_64"]}, local_store, config, "exec-1", NOW)
    from buildfarm.publish import publish

    result = publish(first.summary, local_store, config, now=NOW, signer=None)  # nothing was built
    assert len(result.failed) == 2
    retry = plan({**TWO_PLATFORMS, "arches": ["x86_64"]}, local_store, config, "exec-2", NOW)
    assert [i.spec.build for i in retry.items] == [2, 2]


def test_live_claim_is_skipped_and_reported(local_store, config):
    plan(TWO_PLATFORMS, local_store, config, "exec-1", NOW)
    other = plan(TWO_PLATFORMS, local_store, config, "exec-2", NOW + timedelta(hours=1))
    assert other.counts["planned"] == 0 and other.counts["skipped_claimed"] == 4
    assert other.skipped[0].detail == "build 1 claimed by exec-1 until 2026-11-22T14:00:00Z"
    # Nothing to build: no plan written, no run left open.
    assert not local_store.exists(items_key("exec-2")) and not local_store.exists("runs/exec-2.json")


def test_expired_claim_is_taken_over_with_the_next_build(local_store, config):
    plan(TWO_PLATFORMS, local_store, config, "crashed", NOW)
    later = NOW + timedelta(seconds=config.claim_ttl_seconds + 1)
    result = plan(TWO_PLATFORMS, local_store, config, "exec-2", later)
    assert result.counts["planned"] == 4
    assert {i.spec.build for i in result.items} == {2}
    assert read_json(local_store, claim_key("3.13.5", "rhel-9", "x86_64"))["execution_id"] == "exec-2"


def test_replanning_the_same_execution_keeps_its_claims(local_store, config):
    first = plan(TWO_PLATFORMS, local_store, config, "exec-1", NOW)
    retried = plan(TWO_PLATFORMS, local_store, config, "exec-1", NOW + timedelta(minutes=1))
    assert [i.as_json() for i in retried.items] == [i.as_json() for i in first.items]


def test_released_claims_let_the_next_plan_in(local_store, config):
    first = plan(TWO_PLATFORMS, local_store, config, "exec-1", NOW)
    cells = [tuple(i.cell.split("/")) for i in first.items]
    assert release_claims(local_store, cells, execution_id="someone-else", now=NOW) == 0
    assert release_claims(local_store, cells, execution_id="exec-1", now=NOW) == 4
    marker = read_json(local_store, claim_key(*cells[0]))
    assert marker["released"] is True and marker["build"] == 1
    assert plan(TWO_PLATFORMS, local_store, config, "exec-2", NOW).counts["planned"] == 4


TOO_DEEP = b"[" * 100_000 + b"]" * 100_000  # json.loads raises RecursionError for it, not ValueError


@pytest.mark.parametrize("marker", [b"{garbage", TOO_DEEP], ids=["not-json", "nested-too-deeply"])
def test_corrupt_claim_marker_is_taken_over(local_store, config, marker):
    cell = ("3.13.5", "debian-12", "x86_64")
    local_store.put(claim_key(*cell), marker)
    request = {**TWO_PLATFORMS, "platforms": ["debian-12"], "arches": ["x86_64"]}
    # No execution's claim to release; a dry run plans the cell as the real plan then claims it.
    assert release_claims(local_store, [cell], execution_id="e", now=NOW) == 0
    assert plan({**request, "dry_run": True}, local_store, config, "e", NOW).counts["planned"] == 1
    result = plan(request, local_store, config, "e", NOW)
    assert result.counts["planned"] == 1 and result.items[0].spec.build == 1
    assert read_json(local_store, claim_key(*cell))["execution_id"] == "e"


@pytest.mark.parametrize("backend", ["local", "http_s3"])
def test_racing_planners_claim_each_cell_once(backend, request, config):
    store = request.getfixturevalue("local_store" if backend == "local" else "http_s3_store")
    write_releases(store, ["3.13.5"])
    barrier = threading.Barrier(2)
    results = {}

    def planner(name: str) -> None:
        barrier.wait()
        results[name] = plan({"versions": ["3.13.5"]}, store, config, name, NOW)

    threads = [threading.Thread(target=planner, args=(name,)) for name in ("planner-a", "planner-b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    a, b = results["planner-a"], results["planner-b"]
    cells = a.counts["cells"]
    assert cells == 20  # the 10 platforms live on NOW x 2 arches
    claimed_a = {i.cell for i in a.items}
    claimed_b = {i.cell for i in b.items}
    assert not claimed_a & claimed_b  # no cell claimed twice
    assert len(claimed_a | claimed_b) == cells  # every cell claimed by one of them
    assert a.counts["skipped_claimed"] == len(claimed_b) and b.counts["skipped_claimed"] == len(claimed_a)
    # Every claim marker names the planner whose plan holds the cell (whichever won which).
    owners = {
        cell: name
        for name, claimed in (("planner-a", claimed_a), ("planner-b", claimed_b))
        for cell in claimed
    }
    assert {cell: read_json(store, claim_key(*cell.split("/")))["execution_id"] for cell in owners} == owners


def test_two_planners_racing_for_one_cell_exactly_one_claims(http_s3_store, config):
    write_releases(http_s3_store, ["3.13.5"])
    one_cell = {"versions": ["3.13.5"], "platforms": ["debian-12"], "arches": ["aarch64"]}

    def race(round_: int) -> list:
        barrier = threading.Barrier(2)
        results: list = []

        def planner(name: str) -> None:
            barrier.wait()
            results.append(plan({**one_cell, "force": True}, http_s3_store, config, name, NOW))

        threads = [threading.Thread(target=planner, args=(f"r{round_}-{n}",)) for n in "ab"]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return results

    for round_ in range(5):
        results = race(round_)
        assert sorted(r.counts["planned"] for r in results) == [0, 1]
        assert sorted(r.counts["skipped_claimed"] for r in results) == [0, 1]
        winner = next(r for r in results if r.items)
        release_claims(
            http_s3_store, [("3.13.5", "debian-12", "aarch64")], execution_id=winner.execution_id, now=NOW
        )
        assert winner.items[0].spec.build == round_ + 1


@pytest.mark.slow  # a full-size published matrix (about 20 s)
def test_big_published_matrix_costs_two_reads_and_force_plans_everything(
    s3_store, s3_client, config, registry
):
    versions = list(dict.fromkeys([*fake_versions(48), "3.13.15", "3.11.2", "3.9.2"]))  # + the seed's
    platforms, arches = list(registry.live_platforms(NOW.date())), ["x86_64", "aarch64"]
    write_releases(s3_store, versions)
    cells = write_published_matrix(s3_store, versions, platforms, arches, build=3)
    assert cells == 1000

    calls = count_s3_calls(s3_client)
    scheduled = plan({}, s3_store, config, "scheduled", NOW)
    reads = sum(n for op, n in calls.items() if op in READ_OPERATIONS)
    assert reads == 2, calls
    # the policy's cells: 2 releases of each of 3.13, 3.12, 3.11 on 10 live platforms x 2 arches
    assert scheduled.counts == {
        "cells": 120,
        "planned": 0,
        "skipped_published": 120,
        "skipped_claimed": 0,
        "skipped_failing": 0,
        "deferred": 0,
    }

    calls.clear()
    unbounded = config.model_copy(update={"max_cells_per_execution": 5000})
    forced = plan({"force": True, "versions": versions}, s3_store, unbounded, "break-glass", NOW)
    assert forced.counts["planned"] == 1000
    assert {i.spec.build for i in forced.items} == {4}
    # one listing of claims/, then builds/ and logs/ of each cell to claim (numbering past them)
    assert calls["ListObjectsV2"] == 1 + 2 * 1000
    assert calls["PutObject"] == 1000 + 4  # claims + items + record + the open-run marker (twice)
    location = forced.summary["items"]
    items = json.loads(s3_client.get_object(Bucket=location["bucket"], Key=location["key"])["Body"].read())
    assert len(items) == 1000 and items[0]["spec"]["artifact_dir"].endswith("/4")


def test_summary_stays_tiny_for_a_full_forced_rebuild(local_store, config, registry):
    versions = list(dict.fromkeys([*fake_versions(70), "3.13.15", "3.11.2", "3.9.2"]))
    write_releases(local_store, versions)
    cells = write_published_matrix(
        local_store, versions, list(registry.live_platforms(NOW.date())), ["x86_64", "aarch64"]
    )
    unbounded = config.model_copy(update={"max_cells_per_execution": 5000})
    forced = plan({"force": True, "versions": versions}, local_store, unbounded, "break-glass", NOW)
    assert cells == forced.counts["planned"] == 1440
    summary = json.dumps(forced.summary)
    assert len(summary) < 1024, summary  # Step Functions' payload limit is 256 KB
    assert len(read_json(local_store, items_key("break-glass"))) == 1440


def test_safe_ids():
    assert safe_id("exec-1") == "exec-1"
    assert safe_id("a" * 80) == "a" * 80
    for raw in ("../../etc", "a/b", "x y", "a" * 100, "", "..", "ümlaut"):
        cleaned = safe_id(raw)
        assert cleaned and len(cleaned) <= 80
        assert all(c.isascii() and (c.isalnum() or c in "._-") for c in cleaned)
        assert not cleaned.startswith(".")
    assert safe_id("a/b") != safe_id("a-b")


@pytest.mark.parametrize(
    "module",
    [
        "buildfarm.plan",
        "buildfarm.publish",
        "buildfarm.verify",
        "buildfarm.recovery",
        "buildfarm.runtimes.publish",
        "buildfarm.runtimes.cloud_items",
        "buildfarm.runtimes.farm_cells",
        "buildfarm.handlers.publish",
    ],
)
def test_each_module_imports_first_in_a_fresh_interpreter(module):
    """The planner imports runtime planning at the top, and publishing/verifying import the plan's
    items (buildfarm.plan_items): whichever is imported first, there is no cycle."""
    result = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-600:]


# -- One budget for Python and runtime cells -----------------------------------------------------

BOTH_ARCHES = {"versions": ["3.13.5"], "platforms": ["debian-12", "rhel-9"], "arches": ["x86_64", "aarch64"]}


@pytest.fixture
def svc_both_arches(tmp_path) -> RuntimeDefinition:
    """svc on debian-12 for both arches; with 3.13.5 published on debian-12 only, a plan of
    BOTH_ARCHES wants two Python cells (rhel-9) and two runtime cells (debian-12)."""
    directory = write_svc_definitions(tmp_path / "defs", "idna==3.10")
    (directory / "svc.toml").write_text(SVC_TOML.replace('["x86_64"]', '["x86_64", "aarch64"]'))
    return load_definition(directory / "svc.toml")


def budget_of(config, cells: int):
    return config.model_copy(update={"max_cells_per_execution": cells})


@pytest.mark.parametrize(("budget", "runtimes_claimed"), [(5, 2), (3, 1), (2, 0), (1, 0)])
def test_runtime_cells_take_what_the_python_cells_leave_of_the_budget(
    local_store, config, svc_both_arches, budget, runtimes_claimed
):
    write_releases(local_store, ["3.13.5"])
    write_published_matrix(local_store, ["3.13.5"], ["debian-12"], ["x86_64", "aarch64"])
    result = plan(
        BOTH_ARCHES, local_store, budget_of(config, budget), "exec-1", NOW, runtimes=[svc_both_arches]
    )
    python_claimed = min(budget, 2)
    assert result.budget == budget and len(result.items) == python_claimed
    assert len(result.runtime_items) == runtimes_claimed
    assert result.summary["runtimes"]["deferred"] == 2 - runtimes_claimed
    claimed = [
        local_store.exists(runtime_claim_key("svc", "2.1.0", "debian-12", a)) for a in ("x86_64", "aarch64")
    ]
    assert sum(claimed) == runtimes_claimed  # a deferred cell is not claimed: a later run takes it
    assert read_json(local_store, "runs/exec-1.json")["planned"] == python_claimed + runtimes_claimed


def test_a_dry_run_shows_the_same_split_and_claims_nothing(local_store, config, svc_both_arches):
    write_releases(local_store, ["3.13.5"])
    write_published_matrix(local_store, ["3.13.5"], ["debian-12"], ["x86_64", "aarch64"])
    dry = plan({**BOTH_ARCHES, "dry_run": True}, local_store, budget_of(config, 3), "exec-0", NOW,
               runtimes=[svc_both_arches])  # fmt: skip
    assert (len(dry.items), len(dry.runtime_items), dry.summary["runtimes"]["deferred"]) == (2, 1, 1)
    assert not any(info.key.startswith(("claims/", "runs/", "plans/")) for info in local_store.list(""))


def test_a_scheduled_plan_counts_a_cell_decided_twice_by_another_run_once(local_store, config):
    write_releases(local_store, ["3.13.5"])
    config = budget_of(config, 10)
    first = plan(BOTH_ARCHES, local_store, config, "exec-1", NOW)
    assert len(first.items) == 4
    cell = parse_cell(first.items[0].cell)
    # Failed, then published by a later attempt: two records, one decided cell.
    for status in ("failed", "published"):
        record = {"cell": first.items[0].cell, "status": status}
        local_store.put_json(outcome_key("exec-1", status, cell), record)
    assert plan({"dry_run": True}, local_store, config, "exec-2", NOW).budget == 10 - 3


def test_a_scheduled_plan_counts_the_runtime_cells_other_runs_still_build(
    local_store, config, svc_both_arches
):
    write_releases(local_store, ["3.13.5"])
    write_published_matrix(local_store, ["3.13.5"], ["debian-12"], ["x86_64", "aarch64"])
    config = budget_of(config, 10)
    first = plan(BOTH_ARCHES, local_store, config, "exec-1", NOW, runtimes=[svc_both_arches])
    assert (len(first.items), len(first.runtime_items)) == (2, 2)  # 4 cells in flight

    def scheduled_budget(execution_id: str) -> int:
        return plan(
            {"dry_run": True}, local_store, config, execution_id, NOW, runtimes=[svc_both_arches]
        ).budget

    assert scheduled_budget("exec-2") == 10 - 4
    decide_runtime_item(local_store, first.runtime_items[0], NOW, "build job failed: exit 1", signer=None)
    assert scheduled_budget("exec-3") == 10 - 3  # a decided runtime cell no longer counts
    # An execution that no longer runs counts for nothing (recovery finalizes it).
    ended = plan({"dry_run": True}, local_store, config, "exec-4", NOW, runtimes=[svc_both_arches],
                 is_running=lambda execution: execution != "exec-1")  # fmt: skip
    assert ended.budget == 10


def test_a_plan_with_no_cell_to_build_writes_nothing_even_with_runtimes(local_store, config, tmp_path):
    """Runtime definitions do not cost the schedule's hourly no-op a write: no budget counted,
    no run marker opened, unless a runtime cell is to be built."""
    directory = write_svc_definitions(tmp_path / "defs", "idna==3.10")
    (directory / "svc.toml").write_text(SVC_TOML.replace('python = "3.13"', 'python = "3.12"'))
    waiting = load_definition(directory / "svc.toml")  # no 3.12 is published: it waits
    write_releases(local_store, ["3.13.5"])
    write_published_matrix(local_store, ["3.13.5"], ["debian-12"], ["x86_64"])
    request = {"versions": ["3.13.5"], "platforms": ["debian-12"], "arches": ["x86_64"]}
    plan(request, local_store, config, "exec-0", NOW)  # refreshes releases.json (a write) once
    local_store.calls.clear()
    result = plan(request, local_store, config, "exec-1", NOW, runtimes=[waiting])
    assert (result.items, result.runtime_items, result.budget) == ([], [], 0)
    writes = {op: n for op, n in local_store.calls.items() if op not in ("read", "head")}
    assert writes == {}, local_store.calls
