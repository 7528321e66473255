"""The local runners under concurrency and interruption: builds of one chroot root take
turns, a mount failure fails the preflight phase, SIGTERM stops `buildfarm build`'s driver,
an interrupted farm starts no driver once a preflight ends, and `run --arches amd64` builds
x86_64. Fakes stand in for debootstrap, mounts and the driver: nothing here needs root."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from buildfarm import farm, roots
from buildfarm.models import BuildSpec
from buildfarm.platforms import load_registry
from buildfarm.runners import ChrootRunner
from buildfarm.runners.base import BuildResult

# Writes a build (its manifest) where the root shows the driver its store, then succeeds.
OK_DRIVER = (
    'mkdir -p "$FAKE_STORE/$ARTIFACT_DIR" && echo {} > "$FAKE_STORE/$ARTIFACT_DIR/manifest.json"; '
    'sleep 0.5; echo \'buildfarm: result {"ok": true, "phase": null, "reason": null}\''
)


def spec_in(tmp_path: Path, version: str = "3.13.5") -> BuildSpec:
    return BuildSpec.model_validate(
        {
            "version": version, "platform": "debian-11", "arch": "x86_64", "build": 1,
            "source": {"url": (tmp_path / f"Python-{version}.tar.xz").as_uri(), "sha256": "a" * 64},
            "prefix": f"/opt/python/{version}", "optimization": "none", "store": str(tmp_path / "store"),
            "artifact_dir": f"builds/{version}/debian-11/x86_64/1", "execution_id": "local-1",
        }
    )  # fmt: skip


def chroot_runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ChrootRunner:
    """A debian-11 chroot runner whose root needs no debootstrap and whose driver is `sh`."""
    monkeypatch.setenv("BUILDFARM_ROOTS_DIR", str(tmp_path / "roots"))
    monkeypatch.setattr(ChrootRunner, "ensure_root", lambda self, packages, output: self.root)
    monkeypatch.setattr(roots, "chroot_command", fake_chroot_command)
    registry = load_registry()
    return ChrootRunner(registry.get("debian-11"), registry, "http://127.0.0.1:9/debian")


def fake_chroot_command(root: Path, argv: list[str], env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """The driver as `sh` on this machine, told where the root shows its store (show_binds)."""
    extra = {
        "FAKE_STORE": str(Path(root) / "buildfarm" / "store"),
        "ARTIFACT_DIR": json.loads(env["BUILD_SPEC"])["artifact_dir"],
    }
    return ["sh", "-c", OK_DRIVER], {**env, **extra}


def show_binds(root: Path, binds) -> None:
    """What the bind mounts would show in root, as links (no mounts needed)."""
    for source, target, _ in binds:
        link = Path(root) / target.lstrip("/")
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink():
            link.unlink()
        link.symlink_to(source)


def test_a_second_holder_of_a_root_lock_waits_until_the_first_releases_it(tmp_path):
    root = tmp_path / "debian-11-x86_64"
    order: list[str] = []
    waited = threading.Event()

    def second() -> None:
        with roots.root_lock(root, waiting=waited.set):
            order.append("second")

    with roots.root_lock(root):
        thread = threading.Thread(target=second)
        thread.start()
        assert waited.wait(5)
        time.sleep(0.3)
        order.append("first")
    thread.join(5)
    assert order == ["first", "second"]
    assert (tmp_path / "debian-11-x86_64.lock").exists()


def test_chroot_builds_of_one_root_take_turns(tmp_path, monkeypatch):
    runner = chroot_runner(tmp_path, monkeypatch)
    active, most = [0], [0]
    guard = threading.Lock()

    @contextlib.contextmanager
    def mounted(root, binds=()):
        with guard:
            active[0] += 1
            most[0] = max(most[0], active[0])
        show_binds(root, binds)
        try:
            yield root
        finally:
            with guard:
                active[0] -= 1

    monkeypatch.setattr(roots, "mounted", mounted)
    outputs = [io.StringIO(), io.StringIO()]
    results: list = [None, None]

    def build(index: int, version: str) -> None:
        results[index] = runner.run(spec_in(tmp_path, version), output=outputs[index])

    threads = [threading.Thread(target=build, args=(i, v)) for i, v in enumerate(["3.13.5", "3.12.11"])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert [result.ok for result in results] == [True, True], results
    assert most[0] == 1  # never two builds in the root at once
    for version in ("3.13.5", "3.12.11"):  # published from each build's outbox
        assert (tmp_path / "store" / spec_in(tmp_path, version).artifact_dir / "manifest.json").is_file()
    said = outputs[0].getvalue() + outputs[1].getvalue()
    assert "chroot: waiting for the debian-11 root (another build uses it)" in said


def test_a_mount_failure_fails_the_preflight_phase(tmp_path, monkeypatch, temp_dir):
    runner = chroot_runner(tmp_path, monkeypatch)

    def mounted(root, binds=()):
        raise roots.RootError("mount /sys failed (exit 32): mount -t sysfs sysfs ...")

    monkeypatch.setattr(roots, "mounted", mounted)
    result = runner.run(spec_in(tmp_path), output=io.StringIO())
    assert (result.ok, result.failed_phase) == (False, "preflight")
    assert "mount /sys failed" in (result.reason or "")
    assert list(temp_dir.iterdir()) == []  # the log directory made for the driver went too


def gone(pid: int) -> bool:
    """No such process, or only its zombie (its parent is gone; init reaps it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def wait_gone(pid: int, seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while not gone(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return gone(pid)


# `buildfarm build` with a runner whose driver is a shell waiting on a sleep in its group.
BUILD_SCRIPT = """
import contextlib, os, sys
from pathlib import Path
from buildfarm.cli import build, main
from buildfarm.runners.base import DriverRunner, Launch

class Fake(DriverRunner):
    name = "fake"
    platform_id = "debian-12"

    @contextlib.contextmanager
    def launch(self, spec, output):
        argv = ["sh", "-c", "sleep 30 & echo sleeping $!; wait"]
        yield Launch(argv, dict(os.environ), Path("/nonexistent/build.log"))

build.select_runner = lambda *args, **kwargs: Fake()
sys.exit(main(["build", "3.13.5", "--platform", "debian-12", "--arch", "x86_64",
               "--store", sys.argv[1], "--source-sha256", "a" * 64]))
"""


def test_sigterm_stops_the_driver_of_buildfarm_build(tmp_path, monkeypatch):
    monkeypatch.setenv("BUILDFARM_RELEASES_URL", "http://127.0.0.1:9/api")
    (tmp_path / "store").mkdir()
    process = subprocess.Popen(
        [sys.executable, "-c", BUILD_SCRIPT, str(tmp_path / "store")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    sleeper = None
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith("sleeping "):
                sleeper = int(line.split()[1])
                break
        assert sleeper is not None, process.communicate(timeout=30)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
        assert process.returncode == 130, err
        assert "buildfarm build: interrupted" in err
        assert wait_gone(sleeper)  # the driver's whole process group was stopped
    finally:
        process.kill()
        if sleeper is not None and not gone(sleeper):
            os.kill(sleeper, signal.SIGKILL)


# A farm interrupted while its one cell is in preflight (a command standing for debootstrap,
# apt-get or docker build): the preflight command is stopped and no driver starts after it.
FARM_SCRIPT = """
import contextlib, io, os, signal, subprocess, sys, threading, time
from pathlib import Path
from buildfarm import farm
from buildfarm.runners.base import DriverRunner, Launch

marker = Path(sys.argv[1])

class Fake(DriverRunner):
    name = "fake"
    platform_id = "debian-12"

    @contextlib.contextmanager
    def launch(self, spec, output):
        subprocess.run(["sleep", "3"])
        yield Launch(["sh", "-c", f"touch {marker}"], dict(os.environ), marker)

class Report:
    interrupted = False

class Builder:
    report = Report()

    def __call__(self, item):
        Fake().run(None, output=io.StringIO())

print("building", flush=True)  # the test sends SIGTERM half a second after this
started = time.monotonic()
farm._build_all(Builder(), ["cell"], 1)
print(f"returned after {time.monotonic() - started:.1f} s")
"""


def test_an_interrupted_farm_starts_no_driver_after_a_preflight(tmp_path):
    marker = tmp_path / "driver-ran"
    # The signal comes from here, not a timer in the farm's process: under faketime a timed
    # wait on a condition never ends (the fast suite runs under `faketime -f '+400d'` too).
    farm_process = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(FARM_SCRIPT), str(marker)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert farm_process.stdout is not None and farm_process.stdout.readline() == "building\n"
    time.sleep(0.5)
    farm_process.send_signal(signal.SIGTERM)
    stdout, stderr = farm_process.communicate(timeout=60)
    assert farm_process.returncode == 0, stderr
    time.sleep(0.5)  # a driver started at the very end would have touched it by now
    assert not marker.exists()
    seconds = float(stdout.split()[2])
    assert seconds < 2.5  # the preflight command was stopped, not waited for


def test_run_chooses_runners_for_the_canonical_arch_names(tmp_path, monkeypatch, local_store, config):
    chosen: list[tuple[list[str], list[str]]] = []

    def choose_runners(platforms, arches, requested):
        chosen.append((platforms, arches))
        return {}, {}

    monkeypatch.setattr(farm, "choose_runners", choose_runners)
    request = {"versions": ["3.13.5"], "platforms": ["debian-12"], "arches": ["amd64"]}
    report = farm.run_farm(request, local_store, config, log_dir=tmp_path / "logs")
    assert chosen == [(["debian-12"], ["x86_64"])]
    assert report.plan is None


def test_a_farm_keeps_the_drivers_full_log_beside_its_own_and_leaves_no_temporary_directory(tmp_path):
    temporary = tmp_path / "tmp" / "buildfarm-log-abc"
    temporary.mkdir(parents=True)
    (temporary / "build.log").write_text("every line of make\n")
    (tmp_path / "logs").mkdir()  # the run's log directory (run_farm makes it)
    result = BuildResult(False, "make", "exit 2", temporary / "build.log", {})
    kept = farm.keep_full_log(result, tmp_path / "logs" / "3.13.5-debian-11-x86_64-1.full.log")
    assert kept.log_path == tmp_path / "logs" / "3.13.5-debian-11-x86_64-1.full.log"
    assert kept.log_path.read_text() == "every line of make\n"
    assert not temporary.exists() and kept.reason == "exit 2"
    assert farm.keep_full_log(BuildResult(True, None, None, None, {}), tmp_path / "x.log").log_path is None
