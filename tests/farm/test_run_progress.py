"""`buildfarm run` tells the truth and shows progress: its --help states the real defaults;
each cell's running step and count reach the printer (run_farm passes the runners'
on_progress on); on a terminal they are a live block redrawn in place, elsewhere plain lines,
at most one per cell every 30 s besides the changes of state and phase."""

from __future__ import annotations

import io
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from buildfarm.cli import main
from buildfarm.cli.run import ProgressPrinter
from buildfarm.config import FarmConfig
from buildfarm.farm import CellProgress, run_farm
from buildfarm.platforms import load_registry
from buildfarm.runners import host_arch
from buildfarm.runners.base import BuildResult
from buildfarm.store import LocalStore

NOW = datetime(2026, 11, 22, 10, 0, 0, tzinfo=UTC)
CELL = "3.13.5/debian-12/x86_64"


def test_help_states_the_real_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "platform ids (default: this machine's platform)" in text
    assert f"(default: this machine's arch, {host_arch()})" in text
    assert "the store directory, created if missing (default: $BUILDFARM_STORE, else ./dist)" in text
    assert "all enabled" not in text


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def cell(state: str = "building", **fields: object) -> CellProgress:
    progress = CellProgress(CELL, 1, "host", state=state)  # type: ignore[arg-type]
    for name, value in fields.items():
        setattr(progress, name, value)
    return progress


def test_plain_output_prints_changes_at_once_and_progress_at_most_every_30_s():
    clock, out = FakeClock(), io.StringIO()
    printer = ProgressPrinter(out, clock=clock)
    assert not printer.live  # a StringIO is no terminal
    events = [
        (0, cell("queued")),
        (1, cell(started=1000.0)),
        (2, cell(phase="configure", started=1000.0)),
        (5, cell(phase="configure", step="make", done=10, total=640, unit="objects", started=1000.0)),
        (20, cell(phase="configure", step="make", done=300, total=640, unit="objects", started=1000.0)),
        (35, cell(phase="configure", step="make", done=520, total=640, unit="objects", started=1000.0)),
        (50, cell(phase="configure", step="make", done=600, total=640, unit="objects", started=1000.0)),
        (60, cell(phase="make", started=1000.0)),
        (61, cell(phase="make", step="pgo", done=3, total=None, unit="tests", started=1000.0)),
        (95, cell(phase="make", step="pgo", done=40, total=None, unit="tests", started=1000.0)),
    ]
    for at, progress in events:
        clock.now = 1000.0 + at
        printer(progress)
    assert out.getvalue().splitlines() == [
        f"[0:00] {CELL} build 1: queued",
        f"[0:01] {CELL} build 1: building (host)",
        f"[0:02] {CELL} build 1: building (host): configure done",
        # 0:05 and 0:20 are within 30 s of the last line; 0:50 within 30 s of 0:35.
        f"[0:35] {CELL} build 1: building (host): make 520/640 objects (81%)",
        f"[1:00] {CELL} build 1: building (host): make done",
        f"[1:35] {CELL} build 1: building (host): pgo 40 tests",
    ]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def screen(text: str) -> list[str]:
    """The lines a terminal shows after `text`: ESC[nA CR ESC[J erases the last n lines."""
    lines: list[str] = []
    for part in re.split(r"(\x1b\[[0-9]+A\r\x1b\[J)", text):
        if match := re.fullmatch(r"\x1b\[([0-9]+)A\r\x1b\[J", part):
            del lines[len(lines) - int(match[1]) :]
        else:
            lines += part.splitlines()
    return lines


def test_a_terminal_gets_a_live_line_per_building_cell(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # lines are cut to the terminal's width
    clock, term = FakeClock(), Terminal()
    printer = ProgressPrinter(term, clock=clock)
    assert printer.live
    other = CellProgress("3.12.11/debian-12/x86_64", 4, "chroot", state="building", started=1000.0)
    printer(cell(started=1000.0))
    printer(other)
    clock.now = 1090.0
    printer(cell(phase="configure", step="make", done=160, total=640, unit="objects", started=1000.0))
    assert screen(term.getvalue()) == [
        f"[0:00] {CELL} build 1: building (host)",
        "[0:00] 3.12.11/debian-12/x86_64 build 4: building (chroot)",
        f"  {CELL} build 1: building (host): make 160/640 objects (25%) [#####---------------]  1:30",
        "  3.12.11/debian-12/x86_64 build 4: building (chroot)  1:30",
    ]
    finished = cell("published", started=1000.0, finished=1100.0)
    clock.now = 1100.0
    printer(finished)
    assert screen(term.getvalue())[-2:] == [
        f"[1:40] {CELL} build 1: published after 1:40",
        "  3.12.11/debian-12/x86_64 build 4: building (chroot)  1:40",
    ]
    assert term.getvalue().count("\x1b[2A\r\x1b[J") == 2  # redrawn in place, not scrolled


class StepRunner:
    """Reports the steps a driver would (phases done, objects compiled), builds nothing."""

    name = "fake"
    platform_id = "debian-12"

    def run(self, spec, on_phase=None, output=None, on_progress=None) -> BuildResult:
        on_phase("configure", 1.0)
        for done in range(1, 5):
            on_progress("make", done, 4, "objects")
        on_phase("make", 2.0)
        return BuildResult(False, "selftest", "stand-in runner", None, {})


def test_run_farm_passes_each_cells_progress_to_the_listener(tmp_path: Path, monkeypatch):
    monkeypatch.setattr("buildfarm.farm.select_runner", lambda platform, requested, arch: StepRunner())
    store = LocalStore(tmp_path / "store")
    releases = {"3.13.5": {"version": "3.13.5", "sha256": "ab" * 32, "url": "https://example.invalid/x"}}
    store.put("releases.json", json.dumps({"schema_version": 1, "releases": releases}).encode())
    registry = load_registry()
    config = FarmConfig.defaults(registry, store=store.location, releases_url="http://127.0.0.1:9/api")
    seen: list[tuple[str, str, str, int, int | None, str]] = []

    def listener(progress: CellProgress) -> None:
        seen.append(
            (progress.state, progress.phase, progress.step, progress.done, progress.total, progress.unit)
        )

    request = {"versions": ["3.13.5"], "platforms": ["debian-12"], "arches": ["x86_64"]}
    report = run_farm(
        request, store, config, log_dir=tmp_path / "logs", listener=listener, registry=registry, now=NOW
    )
    assert [c.state for c in report.cells.values()] == ["failed"]
    building = [entry for entry in seen if entry[0] == "building"]
    assert building == [
        ("building", "", "", 0, None, ""),
        ("building", "configure", "", 0, None, ""),
        *[("building", "configure", "make", done, 4, "objects") for done in range(1, 5)],
        ("building", "make", "", 0, None, ""),  # a finished phase clears the step's count
    ]
