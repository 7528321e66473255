"""`buildfarm run` stops on SIGTERM, SIGHUP and SIGINT alike (buildfarm.farm.terminate_on_signals),
also when started with SIGINT ignored, as a shell starts `buildfarm run ... &`."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROGRAM = """\
import os, signal, sys, time
from buildfarm.farm import terminate_on_signals
# Both dispositions are set here, not inherited: a test run started in the background of a
# shell without job control (`pytest &`) starts every child with SIGINT ignored.
if sys.argv[2] == "ignored":
    signal.signal(signal.SIGINT, signal.SIG_IGN)
else:
    signal.signal(signal.SIGINT, signal.default_int_handler)
try:
    with terminate_on_signals():
        os.kill(os.getpid(), getattr(signal, sys.argv[1]))
        time.sleep(5)
    print("not stopped")
except KeyboardInterrupt as stop:
    print("stopped", stop)
print("after:", signal.getsignal(signal.SIGINT) == signal.SIG_IGN)
"""


@pytest.mark.parametrize(
    ("name", "sigint", "said"),
    [
        ("SIGTERM", "default", "stopped SIGTERM"),
        ("SIGHUP", "default", "stopped SIGHUP"),
        ("SIGINT", "default", "stopped"),  # Python's own Ctrl-C
        ("SIGINT", "ignored", "stopped SIGINT"),
    ],
)
def test_each_stop_signal_interrupts_the_run(name: str, sigint: str, said: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROGRAM, name, sigint], capture_output=True, text=True, timeout=30
    )
    first, after = result.stdout.splitlines()
    assert first.strip() == said, result.stdout + result.stderr
    assert after == f"after: {sigint == 'ignored'}"  # the caller's handlers come back
