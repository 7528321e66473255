"""Provenance: only builds a farm execution planned are published.

A manifest must record exactly the spec the plan holds for its cell (execution id included);
anything else - a planted build, a standalone `buildfarm build` - is a failed cell with the
reason, never in versions.json, and its claim is released. New builds are numbered past
everything under builds/ and logs/.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

import buildfarm.cli.build
from buildfarm.claims import Claimant, claim_cell, claim_key
from buildfarm.cli import main
from buildfarm.plan import plan
from buildfarm.publish import BatchOutcome, publish, publish_cell
from buildfarm.recovery import recover
from buildfarm.runners.base import BuildResult
from buildfarm.verify import spec_differences

from .conftest import NOW, REAL_3135_SHA256, fake_build, read_json

DEBIAN_12 = {"versions": ["3.13.5"], "platforms": ["debian-12"]}
X86 = "3.13.5/debian-12/x86_64"
ARM = "3.13.5/debian-12/aarch64"


def published_cells(store) -> dict[str, int]:
    if not store.exists("versions.json"):
        return {}
    builds = read_json(store, "versions.json")["builds"]
    return {
        f"{v}/{p}/{a}": entry["build"]
        for v, platforms in builds.items()
        for p, arches in platforms.items()
        for a, entry in arches.items()
    }


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        (
            {"source.url": "https://evil.example/Python-3.13.5.tar.xz"},
            "source.url 'https://evil.example/Python-3.13.5.tar.xz' (plan: "
            "'https://www.python.org/ftp/python/3.13.5/Python-3.13.5.tar.xz')",
        ),
        ({"source.sha256": "0" * 64}, f"source.sha256 '{'0' * 64}' (plan: '{REAL_3135_SHA256}')"),
        ({"optimization": "none"}, "optimization 'none' (plan: 'pgo+lto')"),
        ({"execution_id": "someone-else"}, "execution_id 'someone-else' (plan: 'exec-1')"),
        ({"execution_id": None}, "execution_id missing (plan: 'exec-1')"),
        ({"prefix": "/usr/local"}, "prefix '/usr/local' (plan: '/opt/python/3.13.5')"),
        ({"extra": "x"}, "extra not in the plan"),
        # Equal in Python (True == 1 == 1.0), not the planned spec: compared as JSON.
        ({"build": True}, "build True (plan: 1)"),
        ({"build": 1.0}, "build 1.0 (plan: 1)"),
    ],
)
def test_a_planted_build_is_a_failed_cell_with_the_reason(local_store, config, changes, reason):
    result = plan(DEBIAN_12, local_store, config, "exec-1", NOW)
    x86, arm = result.items
    fake_build(local_store, x86.spec, spec_changes=changes)
    fake_build(local_store, arm.spec)
    # Batch may even say the job succeeded: the manifest decides.
    for item in (x86, arm):
        publish_cell(item, local_store, NOW, BatchOutcome(status="succeeded", job_id="job-1"), signer=None)
    outcome = publish(result.summary, local_store, config, now=NOW, signer=None)
    assert outcome.published == [ARM]
    assert [(f.cell, f.reason) for f in outcome.failed] == [
        (X86, f"manifest spec differs from the plan: {reason}")
    ]
    assert published_cells(local_store) == {ARM: 1}
    marker = read_json(local_store, claim_key("3.13.5", "debian-12", "x86_64"))
    assert marker["released"] is True and marker["build"] == 1


def test_every_difference_is_named(local_store, config):
    result = plan(DEBIAN_12, local_store, config, "exec-1", NOW)
    planted = fake_build(
        local_store,
        result.items[0].spec,
        spec_changes={"source.sha256": "0" * 64, "optimization": "none", "execution_id": "x"},
    )
    differences = spec_differences(result.items[0].spec, planted["spec"])
    assert [d.split(" ", 1)[0] for d in differences] == ["source.sha256", "optimization", "execution_id"]
    assert spec_differences(result.items[0].spec, "not a spec") == ["spec is str, not an object"]


def test_the_local_runners_mount_paths_are_the_planned_spec(local_store, config, tmp_path):
    """chroot/docker runners hand the driver the store and a file:// source at their mounts."""
    mirror = tmp_path / "mirror"
    config = config.model_copy(update={"source_mirror": mirror.as_uri()})
    result = plan(DEBIAN_12, local_store, config, "exec-1", NOW)
    x86, arm = result.items
    mounted = {"store": "/buildfarm/store", "source.url": "file:///buildfarm/source/Python-3.13.5.tar.xz"}
    fake_build(local_store, x86.spec, spec_changes=mounted)
    # Another file at the mount is not the planned source.
    fake_build(
        local_store, arm.spec, spec_changes={"source.url": "file:///buildfarm/source/Python-3.13.4.tar.xz"}
    )
    outcome = publish(result.summary, local_store, config, now=NOW, signer=None)
    assert outcome.published == [X86]
    assert outcome.failed[0].reason.startswith(
        "manifest spec differs from the plan: source.url 'file:///buildfarm/source/Python-3.13.4.tar.xz'"
    )


class StubRunner:
    """Stands in for a local runner: records the claim it ran under, writes what the driver
    would (the spec it was given, verbatim, in manifest.json)."""

    name = "stub"
    platform_id = "debian-12"

    def __init__(self, store) -> None:
        self.store = store
        self.claims: list[dict] = []

    def run(self, spec, on_phase=None, output=None) -> BuildResult:
        self.claims.append(read_json(self.store, claim_key(spec.version, spec.platform, spec.arch)))
        fake_build(self.store, spec)
        return BuildResult(True, None, None, None, {})


def standalone_build(store, monkeypatch, *extra: str) -> tuple[int, StubRunner]:
    runner = StubRunner(store)
    store.create()  # `build` refuses a named store that does not exist
    monkeypatch.setattr(buildfarm.cli.build, "select_runner", lambda platform, requested, arch: runner)
    argv = ["build", "3.13.5", "--platform", "debian-12", "--arch", "x86_64", "--store", store.location]
    code = main([*argv, "--source-sha256", REAL_3135_SHA256, *extra])
    return code, runner


def test_buildfarm_build_claims_its_cell_and_releases_it(local_store, monkeypatch, capsys):
    local_store.put(f"logs/{X86}/2/failure.json", b"{}")  # a failed build: its number is taken
    code, runner = standalone_build(local_store, monkeypatch)
    assert code == 0
    assert "build 3 stored in" in capsys.readouterr().out
    (during,) = runner.claims
    assert during["build"] == 3 and during["released"] is False
    assert during["execution_id"].startswith("local-")
    after = read_json(local_store, claim_key("3.13.5", "debian-12", "x86_64"))
    assert after["released"] is True and after["execution_id"] == during["execution_id"]
    manifest = read_json(local_store, f"builds/{X86}/3/manifest.json")
    assert manifest["spec"]["execution_id"] == during["execution_id"]
    assert not local_store.exists("versions.json")  # standalone: never published


def test_buildfarm_build_waits_for_a_cell_a_farm_run_holds(local_store, config, monkeypatch, capsys):
    plan(DEBIAN_12, local_store, config, "exec-1")  # live claims, now
    code, runner = standalone_build(local_store, monkeypatch)
    assert code == 2 and runner.claims == []
    assert "3.13.5/debian-12/x86_64 is being built by exec-1 (build 1" in capsys.readouterr().err


def test_buildfarm_build_with_a_taken_number_builds_nothing(local_store, monkeypatch, capsys):
    standalone_build(local_store, monkeypatch)
    capsys.readouterr()
    code, runner = standalone_build(local_store, monkeypatch, "--build", "1")
    assert code == 2 and runner.claims == []
    assert "already exists" in capsys.readouterr().err


def test_a_standalone_build_is_never_published_by_a_farm_run(local_store, config, monkeypatch):
    assert standalone_build(local_store, monkeypatch)[0] == 0  # builds/.../x86_64/1
    result = plan(DEBIAN_12, local_store, config, "exec-1", NOW)
    builds = {item.cell: item.spec.build for item in result.items}
    assert builds == {X86: 2, ARM: 1}  # past the standalone build
    x86, arm = result.items
    # A standalone build (another execution id) where the plan expects its own build.
    standalone = fake_build(
        local_store, arm.spec, spec_changes={"execution_id": "local-host-1-20261122T100000Z"}
    )
    fake_build(local_store, x86.spec)
    outcome = publish(result.summary, local_store, config, now=NOW, signer=None)
    assert outcome.published == [X86]
    assert outcome.failed[0].cell == ARM
    assert outcome.failed[0].reason == (
        "manifest spec differs from the plan: execution_id "
        f"'{standalone['spec']['execution_id']}' (plan: 'exec-1')"
    )
    assert published_cells(local_store) == {X86: 2}


def test_the_next_plan_numbers_past_builds_and_logs(local_store, config):
    local_store.put(f"builds/{X86}/1/manifest.json", b"{}")  # planted: no claim, no catalog entry
    local_store.put(f"logs/{X86}/4/build.log", b"")
    local_store.put(f"builds/{X86}/07/manifest.json", b"{}")  # not a build number artifact_dir writes
    local_store.put(f"logs/{ARM}/2/failure.json", b"{}")
    dry = plan({**DEBIAN_12, "dry_run": True}, local_store, config, "exec-0", NOW)
    assert {item.cell: item.spec.build for item in dry.items} == {X86: 5, ARM: 3}
    result = plan(DEBIAN_12, local_store, config, "exec-1", NOW)
    assert {item.cell: item.spec.build for item in result.items} == {X86: 5, ARM: 3}
    assert {item.spec.execution_id for item in result.items} == {"exec-1"}
    assert read_json(local_store, claim_key("3.13.5", "debian-12", "x86_64"))["build"] == 5


def test_recovery_publishes_only_the_planned_builds_of_a_dead_run(local_store, config):
    def is_running(execution_id: str) -> bool | None:
        return not execution_id.startswith("local-dead")

    result = plan(DEBIAN_12, local_store, config, "local-dead-run", NOW)
    x86, arm = result.items
    fake_build(local_store, x86.spec)
    fake_build(local_store, arm.spec, spec_changes={"optimization": "none"})
    # A dead standalone build: a claim without a plan (and so without an open run).
    standalone = ("3.12.11", "debian-12", "x86_64")
    claim_cell(local_store, standalone, Claimant("local-dead-standalone", "local-dead-standalone", NOW, 3600),
               published_build=0)  # fmt: skip
    fake_build(local_store, {**x86.spec.model_dump(), "version": "3.12.11", "prefix": "/opt/python/3.12.11",
                             "artifact_dir": "builds/3.12.11/debian-12/x86_64/1",
                             "execution_id": "local-dead-standalone"})  # fmt: skip
    later = NOW + timedelta(minutes=5)
    recovery = recover(
        local_store, config, later, is_running=is_running, own_execution_id="local-next", signer=None
    )
    assert (recovery.finalized, recovery.published, recovery.failed) == (["local-dead-run"], [X86], [ARM])
    assert published_cells(local_store) == {X86: 1}
    assert read_json(local_store, claim_key("3.13.5", "debian-12", "aarch64"))["released"] is True
    assert not local_store.exists("runs/local-dead-run.json")
    # The standalone build is never published; its claim is live by its expiry, but its process
    # is gone, so the next planner takes the cell over at the next number.
    taken = claim_cell(
        local_store,
        standalone,
        Claimant("local-next", "local-next", later, 3600, is_running),
        published_build=1,
    )
    assert (taken.status, taken.build) == ("claimed", 2)
    assert recover(local_store, config, later, is_running=is_running, signer=None).finalized == []
