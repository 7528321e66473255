"""A driver outlives no `buildfarm run`: killed outright (SIGKILL, the OOM killer), the run can
stop nothing, so the driver is started to get SIGTERM when its parent dies (runners.base
dies_with_parent), and stops its build as it does for any SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

DRIVER = """\
import os, signal, sys, time
def stop(signum, frame):
    open(sys.argv[1] + ".stopped", "w").write(str(signum))
    sys.exit(1)
signal.signal(signal.SIGTERM, stop)
open(sys.argv[1] + ".ready", "w").write(str(os.getpid()))
time.sleep(120)
"""

PARENT = """\
import io, sys
from buildfarm.runners.base import run_driver
run_driver([sys.executable, sys.argv[1], sys.argv[2]], {}, None, output=io.StringIO())
"""


def _wait_for(path: Path, seconds: float = 20) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists() and path.read_text():
            return True
        time.sleep(0.05)
    return False


def test_a_driver_whose_run_is_killed_is_told_to_stop(tmp_path: Path) -> None:
    (tmp_path / "driver.py").write_text(DRIVER)
    (tmp_path / "parent.py").write_text(PARENT)
    marker = tmp_path / "driver"
    parent = subprocess.Popen(
        [sys.executable, str(tmp_path / "parent.py"), str(tmp_path / "driver.py"), str(marker)]
    )
    try:
        assert _wait_for(marker.with_suffix(".ready")), "the driver did not start"
        driver_pid = int(marker.with_suffix(".ready").read_text())
        parent.send_signal(signal.SIGKILL)  # nothing of the run's own code runs after this
        parent.wait(timeout=10)
        assert _wait_for(marker.with_suffix(".stopped")), "the driver was not told its run died"
        assert marker.with_suffix(".stopped").read_text() == str(int(signal.SIGTERM))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and os.path.exists(f"/proc/{driver_pid}"):
            time.sleep(0.05)
        assert not os.path.exists(f"/proc/{driver_pid}")
    finally:
        parent.kill()
