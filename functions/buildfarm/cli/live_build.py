"""`buildfarm build` on a terminal: the build's phases and the running step's progress
(objects compiled, PGO tests run) as `buildfarm run` shows a cell, a live line with a bar.

Elsewhere (logs, pipes) the driver's own lines pass through unchanged: a line per finished
phase, and a `buildfarm: progress ...` line at least every 30 s during make, PGO and BOLT."""

from __future__ import annotations

import io
import sys
import time
from typing import IO

from buildfarm.cli.run import ProgressPrinter
from buildfarm.farm import CellProgress
from buildfarm.models import BuildSpec
from buildfarm.runners import BuildResult, Runner

# On a failure the driver's last lines (the failing phase's tail) are shown after the bar.
TAIL_LINES = 40


def build_showing_progress(runner: Runner, spec: BuildSpec, stream: IO[str] | None = None) -> BuildResult:
    """Run one build, showing its progress live if `stream` (default stdout) is a terminal."""
    stream = sys.stdout if stream is None else stream
    if not stream.isatty():
        return runner.run(spec, output=stream)
    cell = CellProgress(
        f"{spec.version}/{spec.platform}/{spec.arch}",
        spec.build,
        runner.name,
        "building",
        started=time.monotonic(),
    )
    printer = ProgressPrinter(stream, live=True)

    def on_phase(phase: str, seconds: float) -> None:
        cell.phase_done(phase)
        printer(cell)

    def on_progress(step: str, done: int, total: int | None, unit: str) -> None:
        cell.reported(step, done, total, unit)
        printer(cell)

    printer(cell)
    driver_output = io.StringIO()
    result = runner.run(spec, on_phase=on_phase, output=driver_output, on_progress=on_progress)
    cell.finished, cell.state = time.monotonic(), "built" if result.ok else "failed"
    printer(cell)
    if not result.ok:
        stream.writelines(line + "\n" for line in driver_output.getvalue().splitlines()[-TAIL_LINES:])
    return result
