"""What a benchmark ran on: the CPU model, the cores and a fixed-loop timing.

This VM moves between hosts, and the same builds have measured differently from day to day
(3.11.2 at 1.13x bookworm's python3.11 on one day and 1.03x on another, same flags), so every
figure is printed beside the machine it came from.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

# A fixed pure-Python loop, timed before the work: a build time or a speed ratio is comparable
# with another day's only next to this figure (the same commit's CI took 25.5 and 18.2 min an
# hour apart).
REFERENCE_LOOP = "sum(i * i % 7 for i in range(10_000_000))"


def reference_seconds() -> float:
    """The machine's speed today: REFERENCE_LOOP's wall time in a fresh interpreter, best of 3."""
    best = float("inf")
    for _ in range(3):
        started = time.monotonic()
        subprocess.run([sys.executable, "-c", REFERENCE_LOOP], check=True)
        best = min(best, time.monotonic() - started)
    return best


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The first processor's model name, family and model from cpuinfo ("unknown" without)."""
    fields: dict[str, str] = {}
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return "unknown"
    for line in text.split("\n\n", 1)[0].splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    name = fields.get("model name", "unknown")
    if "cpu family" in fields and "model" in fields:
        name += f" (family {fields['cpu family']}, model {fields['model']})"
    return name


def describe(reference: float) -> str:
    """One line naming the machine: CPU model, cores, the reference loop's time."""
    return (
        f"machine: {cpu_model()}, {os.cpu_count()} cores; reference loop {reference:.2f} s (lower is faster)"
    )
