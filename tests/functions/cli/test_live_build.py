"""`buildfarm build` on a terminal shows the running step's progress as a live bar; elsewhere
the driver's own lines pass through."""

from __future__ import annotations

import io

from buildfarm.cli.live_build import build_showing_progress
from buildfarm.models import BuildSpec, artifact_dir
from buildfarm.runners import BuildResult

SPEC = BuildSpec(
    version="3.13.5",
    platform="debian-12",
    arch="x86_64",
    build=1,
    source={"url": "http://127.0.0.1:9/3.13.5/Python-3.13.5.tar.xz", "sha256": "0" * 64},
    prefix="/opt/python/3.13.5",
    optimization="none",
    store="/tmp/nowhere",
    artifact_dir=artifact_dir("3.13.5", "debian-12", "x86_64", 1),
    execution_id="local-test",
)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class StepRunner:
    """Reports a finished phase and make's progress, as the driver's lines do."""

    name, platform_id = "host", "debian-12"

    def __init__(self, ok: bool = True) -> None:
        self.ok = ok

    def run(self, spec, on_phase=None, output=None, on_progress=None) -> BuildResult:
        output.write("buildfarm: phase configure done in 1.0 s\n")
        if on_phase:
            on_phase("configure", 1.0)
        output.write("buildfarm: progress make 70/280 objects\n")
        if on_progress:
            on_progress("make", 70, 280, "objects")
        if not self.ok:
            output.write("gcc: error: something broke\n")
        return BuildResult(self.ok, None if self.ok else "make", None if self.ok else "exit 2", None, {})


def test_on_a_terminal_progress_is_a_live_bar_and_the_driver_lines_are_not_echoed(monkeypatch):
    monkeypatch.setenv("COLUMNS", "160")  # the live line is cut at the terminal's width
    terminal = Terminal()
    assert build_showing_progress(StepRunner(), SPEC, terminal).ok
    shown = terminal.getvalue()
    assert "make 70/280 objects (25%) [#####---------------]" in shown
    assert "\x1b[" in shown  # redrawn in place
    assert "buildfarm: progress" not in shown and "buildfarm: phase" not in shown
    assert "3.13.5/debian-12/x86_64 build 1: built after" in shown


def test_on_a_terminal_a_failure_shows_the_drivers_last_lines():
    terminal = Terminal()
    assert not build_showing_progress(StepRunner(ok=False), SPEC, terminal).ok
    assert "gcc: error: something broke" in terminal.getvalue()


def test_elsewhere_the_driver_lines_pass_through():
    log = io.StringIO()
    assert build_showing_progress(StepRunner(), SPEC, log).ok
    assert log.getvalue() == (
        "buildfarm: phase configure done in 1.0 s\nbuildfarm: progress make 70/280 objects\n"
    )
