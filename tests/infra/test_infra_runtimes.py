"""Runtime cells in the workflow (issue 16), run in moto (see moto_farm.py) with the real
handlers: a run plans a runtime cell once its Python is published, the BuildRuntimes Map
submits the cell's Batch job with the item's argv as its command (the stand-in writes the
runtime build that command names), PublishRuntime signs and publishes it, Finalize lists it
on the status page; the next run finds it current."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import stand_in
from moto_farm import BUCKET, SHA_3135, Farm
from runtime_definitions import write_svc_definitions

from buildfarm.catalog.versions_json import runtime_cells
from buildfarm.workflow_names import STACK_NAME, States
from infra.workflow_states import RuntimeStates

pytestmark = pytest.mark.slow

CELL = ("svc", "2.1.0", "debian-12", "x86_64")
DEBIAN_12 = {"versions": ["3.13.5"], "platforms": ["debian-12"], "arches": ["x86_64"]}


def entered(farm: Farm, execution: dict, name: str) -> bool:
    return any(
        (event.get("stateEnteredEventDetails") or {}).get("name") == name
        for event in farm.history(execution["executionArn"])
    )


def test_a_runtime_cell_runs_its_command_on_batch_and_is_published_signed(farm: Farm, tmp_path: Path) -> None:
    definitions = write_svc_definitions(tmp_path / "defs")
    farm.set_environment(BUILDFARM_RUNTIMES=str(definitions))
    stand_in.RUNTIME_DEFINITIONS.append(definitions)
    farm.seed_releases({"3.13.5": SHA_3135})

    first = farm.run(DEBIAN_12)  # the Python cell; its runtime waits for it to be published
    assert first["status"] == "SUCCEEDED" and stand_in.RUNTIME_COMMANDS == []
    assert not entered(farm, first, RuntimeStates.BUILD_RUNTIMES)

    second = farm.run(DEBIAN_12)  # runtimes only: the Python Map is skipped
    assert second["status"] == "SUCCEEDED", second.get("cause") or second.get("error")
    assert not entered(farm, second, States.BUILD) and entered(farm, second, RuntimeStates.BUILD_RUNTIMES)
    commands = stand_in.RUNTIME_COMMANDS
    assert commands == [
        ["buildfarm", "runtime", "build", "svc", "--platform", "debian-12", "--arch", "x86_64",
         "--runtime-version", "2.1.0", "--build", "1", "--execution-id", second["name"],
         "--store", f"s3://{BUCKET}"],
    ]  # fmt: skip
    assert runtime_cells(farm.read_json("versions.json"))[CELL].build == 1
    # On the runtime job definition of its platform and arch (its own job role), not the builder's.
    jobs = farm.batch.list_jobs(jobQueue=f"{STACK_NAME}-x86_64", jobStatus="SUCCEEDED")["jobSummaryList"]
    described = farm.batch.describe_jobs(jobs=[job["jobId"] for job in jobs])["jobs"]
    (runtime_job,) = [job for job in described if job["jobName"] == "debian-12-x86_64-runtime1"]
    assert runtime_job["jobDefinition"].split("/")[-1].startswith(f"{STACK_NAME}-runtime-debian-12-x86_64:")
    directory = "runtimes/svc/2.1.0/debian-12/x86_64/1"
    assert farm.exists(f"{directory}/SHA256SUMS.sig") and farm.exists("versions.json.sig")
    claim = farm.read_json("claims/runtimes/svc/2.1.0/debian-12/x86_64.json")
    assert claim["released"] is True and claim["build"] == 1
    assert "svc" in farm.read("index.html").decode()  # Finalize regenerated the page
    output = json.loads(second["output"])
    assert output["publish"]["failed"] == []

    third = farm.run(DEBIAN_12)
    assert third["status"] == "SUCCEEDED" and entered(farm, third, States.NOTHING_TO_BUILD)
    assert len(stand_in.RUNTIME_COMMANDS) == 1
