"""A full work disk is often the failure itself: the driver still reports it with its reason,
and still records it in the store (the build.log it has, failure.json from memory)."""

from __future__ import annotations

import errno
import json
from types import SimpleNamespace

from driver import main, process, upload

CELL = {"version": "3.13.15", "platform": "debian-12", "arch": "x86_64", "build": 2}


def test_a_log_on_a_full_disk_keeps_its_lines_in_memory() -> None:
    log = process.Log("/dev/full")  # every write: ENOSPC
    log.start_phase("configure")
    log.write("checking for gcc... gcc\n")
    assert log.write_error is not None and log.write_error.errno == errno.ENOSPC
    log.write("tar: write error: No space left on device\n")
    assert log.tail()[-1] == "tar: write error: No space left on device"
    log.close()  # the last flush fails quietly too


def test_a_failure_on_a_full_disk_is_reported_and_recorded_with_its_reason(
    tmp_path, capsys, monkeypatch
) -> None:
    monkeypatch.delenv("BUILDFARM_LOG_FILE", raising=False)
    store = upload.LocalStore(str(tmp_path / "store"))
    log = process.Log(str(tmp_path / "build.log"))
    log.write("checking for gcc... gcc\n")
    log.handle.close()
    log.handle = open("/dev/full", "w")  # noqa: SIM115 - the disk is full from here on
    build = SimpleNamespace(log=log, work=str(tmp_path / "no-such-work-dir"), spec=CELL, store=store)
    error = main.BuildError("configure", "cannot run tar: [Errno 28] No space left on device")

    result = main.report_failure(build, "configure", error)

    assert result == {"ok": False, "phase": "configure", "reason": error.reason}
    said = capsys.readouterr().out
    assert "phase configure FAILED: cannot run tar: [Errno 28] No space left on device" in said
    assert "build.log is incomplete" in said
    record = tmp_path / "store" / "logs/3.13.15/debian-12/x86_64/2"
    failure = json.loads((record / "failure.json").read_text())
    assert failure["phase"] == "configure" and failure["reason"] == error.reason
    assert failure["tail"] == ["checking for gcc... gcc"]
    assert (record / "build.log").read_text() == "checking for gcc... gcc\n"  # what the file got
