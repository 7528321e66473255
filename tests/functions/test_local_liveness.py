"""A local run's liveness is what its execution id records (host, pid, a fingerprint of the
process's start time and the boot), checked against the process table, with real processes:
a live run is alive however it was started; a gone pid, a pid now held by another process and
another boot are dead; another host's run cannot be told here, so its claim's expiry decides."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from datetime import timedelta

import pytest

from buildfarm import recovery
from buildfarm.claims import Claim
from buildfarm.layout import claim_key
from buildfarm.plan import MAX_ID, plan, safe_id
from buildfarm.recovery import (
    boot_id,
    local_execution_id,
    local_liveness,
    process_fingerprint,
    process_start_ticks,
    recover,
)
from buildfarm.releases import iso

from .conftest import NOW, write_releases

REQUEST = {"versions": ["3.13.5"], "platforms": ["debian-12"], "arches": ["x86_64"]}
CELL = ("3.13.5", "debian-12", "x86_64")


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen]:
    """A process that is not `buildfarm` by any name (its command line is `sleep 300`)."""
    process = subprocess.Popen(["sleep", "300"])
    yield process
    process.kill()
    process.wait()


def end(process: subprocess.Popen) -> None:
    process.kill()
    process.wait()  # reaped: the pid no longer exists


def with_fingerprint(execution_id: str, fingerprint: str) -> str:
    return re.sub(r"-[0-9a-f]{8}-([0-9]{8}T[0-9]{6}Z)$", rf"-{fingerprint}-\1", execution_id)


def test_this_process_and_a_process_started_any_other_way_are_alive(sleeper):
    assert local_liveness(local_execution_id(NOW)) is True
    assert local_liveness(local_execution_id(NOW, pid=sleeper.pid)) is True


def test_a_process_that_ended_is_dead(sleeper):
    execution_id = local_execution_id(NOW, pid=sleeper.pid)
    end(sleeper)
    assert local_liveness(execution_id) is False


def test_a_pid_held_by_another_process_is_dead(sleeper):
    """The pid runs, but not the process that made the run (it started at another time)."""
    ticks = process_start_ticks(sleeper.pid)
    assert ticks is not None
    execution_id = local_execution_id(NOW, pid=sleeper.pid)
    earlier = with_fingerprint(execution_id, process_fingerprint(ticks - 1, boot_id()))
    assert earlier != execution_id
    assert local_liveness(earlier) is False


def test_the_same_pid_and_start_time_in_another_boot_is_dead(sleeper):
    ticks = process_start_ticks(sleeper.pid)
    assert ticks is not None and boot_id()
    execution_id = local_execution_id(NOW, pid=sleeper.pid)
    other_boot = with_fingerprint(execution_id, process_fingerprint(ticks, "another-boot"))
    assert local_liveness(other_boot) is False


def test_another_hosts_run_is_alive_until_its_claim_expires(sleeper):
    here = local_execution_id(NOW, pid=sleeper.pid)
    elsewhere = here.replace(f"local-{recovery._host()}-", "local-another-host-", 1)
    assert local_liveness(elsewhere) is None
    claim = Claim(
        cell="3.13.5/debian-12/x86_64",
        execution_id=elsewhere,
        plan_id=elsewhere,
        build=1,
        claimed_at=iso(NOW),
        expires_at=iso(NOW + timedelta(hours=4)),
    )
    assert claim.live(NOW + timedelta(hours=3), local_liveness)
    assert not claim.live(NOW + timedelta(hours=4, seconds=1), local_liveness)


def test_an_id_without_a_fingerprint_is_dead_only_when_its_pid_is_gone(sleeper):
    """Ids made before fingerprints (local-<host>-<pid>-<time>): a live pid may be anyone's."""
    legacy = f"local-{recovery._host()}-{sleeper.pid}-20261122T100000Z"
    assert local_liveness(legacy) is None
    end(sleeper)
    assert local_liveness(legacy) is False


def test_ids_fit_one_store_key_segment(monkeypatch):
    monkeypatch.setattr(recovery.socket, "gethostname", lambda: "h" * 63 + ".example.internal")
    execution_id = local_execution_id(NOW, pid=4194304)  # Linux's largest pid_max
    assert len(execution_id) <= MAX_ID and safe_id(execution_id) == execution_id
    assert local_liveness(local_execution_id(NOW)) is True


def test_recovery_keeps_a_live_run_started_another_way_and_finalizes_it_once_dead(
    local_store, config, sleeper
):
    write_releases(local_store, ["3.13.5"])
    execution_id = local_execution_id(NOW, pid=sleeper.pid)
    plan(REQUEST, local_store, config, execution_id, NOW, is_running=local_liveness)
    later = NOW + timedelta(seconds=config.claim_ttl_seconds + 3600)  # past its claims' expiry

    found = recover(local_store, config, later, is_running=local_liveness, signer=None)
    assert found.running == [execution_id] and found.finalized == []
    held = plan(REQUEST, local_store, config, "exec-2", later, is_running=local_liveness)
    assert held.items == [] and held.skipped[0].reason == "claimed"
    assert f"claimed by {execution_id}" in held.skipped[0].detail

    end(sleeper)
    found = recover(local_store, config, later, is_running=local_liveness, signer=None)
    assert found.finalized == [execution_id] and found.failed == ["3.13.5/debian-12/x86_64"]
    assert local_store.read_json(claim_key(*CELL))[0]["released"] is True
    again = plan(REQUEST, local_store, config, "exec-3", later, is_running=local_liveness)
    assert [item.cell for item in again.items] == ["3.13.5/debian-12/x86_64"]
