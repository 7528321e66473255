"""Convergence and recovery of the workflow in moto (see moto_farm.py): an execution claims no
more than its budget and later runs catch up; a stopped execution's finished builds and a run
whose Finalize failed are finalized by the next execution's Recover, never rebuilt or lost."""

from __future__ import annotations

import threading
from collections import Counter
from unittest import mock

import pytest
import stand_in
from moto_farm import SHA_3135, Farm
from runtime_definitions import LOCKED_HASH, write_svc_definitions
from stand_in import ACTIVITY, BUILT, HOLD, SUBMITTED, WAITING

from buildfarm.catalog.versions_json import runtime_cells
from buildfarm.workflow_names import Errors

# Step Functions executions in moto's interpreter: minutes in all, so not in `-m 'not slow'`.
pytestmark = pytest.mark.slow

CELLS = {"versions": ["3.13.5"], "platforms": ["debian-12", "rhel-9"]}  # 4 cells


def cells_of(specs: list[dict]) -> list[str]:
    return [f"{s['version']}/{s['platform']}/{s['arch']}" for s in specs]


def open_runs(farm: Farm) -> list[str]:
    return farm.keys("runs/")


def unreleased_claims(farm: Farm) -> list[str]:
    return [key for key in farm.keys("claims/") if not farm.read_json(key).get("released")]


def test_executions_claim_at_most_their_budget_and_catch_up(farm: Farm) -> None:
    farm.seed_releases({"3.13.5": SHA_3135, "3.13.4": "ab" * 32})
    farm.set_environment(BUILDFARM_MAX_CELLS_PER_EXECUTION="3")
    request = {"versions": ["3.13.5", "3.13.4"], "platforms": ["debian-12", "rhel-9"]}  # 8 cells
    planned = []
    for _ in range(4):
        execution = farm.run(request)
        assert execution["status"] == "SUCCEEDED", execution
        planned.append(farm.plan_counts(execution))
    assert [(c["planned"], c["deferred"]) for c in planned] == [(3, 5), (3, 2), (2, 0), (0, 0)]
    # The newest release first, each cell built once, everything published, nothing left open.
    # (a Map runs its items in any order; executions run one after the other)
    assert {cell.split("/")[0] for cell in cells_of(SUBMITTED[:3])} == {"3.13.5"}
    assert [cell.split("/")[0] for cell in cells_of(SUBMITTED[3:6])].count("3.13.5") == 1
    assert Counter(cells_of(SUBMITTED)).most_common(1)[0][1] == 1 and len(SUBMITTED) == 8
    assert set(farm.published().values()) == {1} and len(farm.published()) == 8
    assert open_runs(farm) == [] and unreleased_claims(farm) == []


def test_a_stopped_execution_is_finalized_by_the_next_without_rebuilding(farm: Farm) -> None:
    farm.seed_releases({"3.13.5": SHA_3135})
    held = "3.13.5/debian-12/x86_64"
    HOLD[held] = threading.Event()
    arn = farm.start(CELLS)
    # Every build is complete in the store (the Map runs all four at once); the held cell's
    # job has not ended: stop the run now.
    with ACTIVITY:
        assert ACTIVITY.wait_for(lambda: held in WAITING and len(BUILT) == 4, timeout=60)
    farm.sfn.stop_execution(executionArn=arn, error="Stopped", cause="test: operator stopped it")
    HOLD[held].set()
    assert farm.run_wait(arn)["status"] == "ABORTED"
    # Its jobs and PublishCells run on, as in AWS; the next run starts after they end, so what
    # its Recover finds does not depend on how the threads were scheduled.
    farm.wait_quiet()
    first = cells_of(SUBMITTED)
    run_id = arn.rsplit(":", 1)[1]
    assert open_runs(farm) == [f"runs/{run_id}.json"]
    assert held not in farm.published()

    SUBMITTED.clear()
    second = farm.run(CELLS)
    assert second["status"] == "SUCCEEDED", second
    published = farm.published()
    assert set(published) == {f"3.13.5/{p}/{a}" for p in CELLS["platforms"] for a in ("x86_64", "aarch64")}
    # The finished build was published by Recover as build 1, not built again.
    assert published[held] == 1 and held not in cells_of(SUBMITTED)
    # Every cell was built exactly once across the two executions.
    assert sorted(first + cells_of(SUBMITTED)) == sorted(published)
    assert open_runs(farm) == [] and unreleased_claims(farm) == []


def test_a_failed_finalize_is_finished_by_the_next_run(farm: Farm) -> None:
    farm.seed_releases({"3.13.5": SHA_3135})
    with mock.patch("buildfarm.publish.regenerate_derived", side_effect=RuntimeError("S3 said no")):
        failed = farm.run(CELLS)
    assert (failed["status"], failed["error"]) == ("FAILED", Errors.FINALIZE_FAILED)
    # Each cell was published as it was built; the derived files were not written.
    assert len(farm.published()) == 4 and not farm.exists("index.html")
    assert len(open_runs(farm)) == 1

    SUBMITTED.clear()
    again = farm.run(CELLS)
    assert again["status"] == "SUCCEEDED", again
    assert SUBMITTED == []  # nothing rebuilt: Recover finished the run, Plan found it all published
    assert farm.exists("index.html") and farm.exists("download-metadata/debian-12.json")
    assert open_runs(farm) == [] and unreleased_claims(farm) == []


def test_a_built_runtime_whose_run_ended_unpublished_is_published_by_the_next(farm: Farm, tmp_path) -> None:
    """A run of runtime cells only whose PublishRuntime and Finalize both failed: the runtime
    build its job wrote stays unpublished, its run open; the next run's Recover verifies and
    publishes it (signed), and closes the run; nothing is rebuilt."""
    definitions = write_svc_definitions(tmp_path / "defs")
    farm.set_environment(BUILDFARM_RUNTIMES=str(definitions))
    stand_in.RUNTIME_DEFINITIONS.append(definitions)
    farm.seed_releases({"3.13.5": SHA_3135})
    debian_12 = {"versions": ["3.13.5"], "platforms": ["debian-12"], "arches": ["x86_64"]}
    assert farm.run(debian_12)["status"] == "SUCCEEDED"  # the Python cell the runtime needs

    refused = RuntimeError("the publisher was down")
    with (
        mock.patch("buildfarm.handlers.publish.decide_runtime_item", side_effect=refused),
        mock.patch("buildfarm.finalize.finalize_runtime_items", side_effect=refused),
    ):
        failed = farm.run(debian_12)
    assert failed["status"] == "FAILED", failed
    directory = "runtimes/svc/2.1.0/debian-12/x86_64/1"
    assert farm.exists(f"{directory}/manifest.json") and not farm.exists(f"{directory}/SHA256SUMS.sig")
    assert not runtime_cells(farm.read_json("versions.json")) and len(open_runs(farm)) == 1
    assert len(stand_in.RUNTIME_COMMANDS) == 1

    again = farm.run(debian_12)
    assert again["status"] == "SUCCEEDED", again
    assert runtime_cells(farm.read_json("versions.json"))[("svc", "2.1.0", "debian-12", "x86_64")].build == 1
    assert farm.exists(f"{directory}/SHA256SUMS.sig")
    assert len(stand_in.RUNTIME_COMMANDS) == 1  # published by Recover, not built again
    assert open_runs(farm) == [] and unreleased_claims(farm) == []

    # A changed lock: a run of runtime cells only, which Finalize closes (Plan opened it).
    (definitions / "svc" / "requirements.txt").write_text(f"idna==3.10 {LOCKED_HASH}\n")
    rebuilt = farm.run(debian_12)
    assert rebuilt["status"] == "SUCCEEDED", rebuilt
    assert runtime_cells(farm.read_json("versions.json"))[("svc", "2.1.0", "debian-12", "x86_64")].build == 2
    assert len(stand_in.RUNTIME_COMMANDS) == 2 and open_runs(farm) == []


def test_recover_and_finalize_name_at_most_one_constants_number() -> None:
    """Recover's runs and Finalize's failed cells are capped by the same constant, not by a
    literal of each handler's own."""
    import inspect
    import re

    from buildfarm import finalize
    from buildfarm.handlers import publish, recover

    assert recover.MAX_NAMED is finalize.MAX_NAMED
    for module in (recover, publish, finalize):
        assert not re.search(r"\[:\s*50\]", inspect.getsource(module)), module.__name__
