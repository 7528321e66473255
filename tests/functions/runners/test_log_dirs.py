"""The driver's full log lands in a buildfarm-log-* directory of its own (runners.base
new_log_path), and that directory goes once nothing needs it: at once when the driver wrote no
log, after `buildfarm build` stored a build (the store holds its build.log), and after a failed
build whose failure record the store holds (`buildfarm build` names the store's copy); a failed
build's log stays, named, when the store has none. The CDK app's staging directories go when it
exits.

Real runs of DriverRunner.run and `main()` with a shell script as the driver; each test has its
own temporary directory (tempfile.tempdir), so what is left in it is what the code left."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from buildfarm.cli import build, main
from buildfarm.models import BuildSpec
from buildfarm.runners.base import BuildResult, DriverRunner, Launch, new_log_path

OK = 'echo \'buildfarm: result {"ok": true, "phase": null, "reason": null}\''
FAILED = 'echo \'buildfarm: result {"ok": false, "phase": "make", "reason": "exit 2"}\''
WRITE_LOG = 'echo "every line of make" > "$0"'


class ShellDriver(DriverRunner):
    """A runner whose driver is `script`, given the log's path as $0."""

    name = "fake"
    platform_id = "debian-12"

    def __init__(self, script: str) -> None:
        self.script = script

    @contextlib.contextmanager
    def launch(self, spec: BuildSpec, output: IO[str]) -> Iterator[Launch]:
        log_path = new_log_path()
        yield Launch(["sh", "-c", self.script, str(log_path)], dict(os.environ), log_path)


def _run(script: str) -> BuildResult:
    return ShellDriver(script).run(None, output=io.StringIO())  # type: ignore[arg-type]


@pytest.mark.parametrize("script", [OK, FAILED, "exit 3"], ids=["ok", "failed", "no-result"])
def test_a_driver_that_wrote_no_log_leaves_no_directory(temp_dir, script):
    result = _run(script)
    assert result.log_path is None
    assert list(temp_dir.iterdir()) == []


def test_a_failed_drivers_log_stays_where_the_result_says(temp_dir):
    result = _run(f"{WRITE_LOG}; {FAILED}")
    assert not result.ok and result.reason == "exit 2"
    assert result.log_path.parent.parent == temp_dir
    assert result.log_path.read_text() == "every line of make\n"


def _build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: str) -> int:
    monkeypatch.setenv("BUILDFARM_RELEASES_URL", "http://127.0.0.1:9/api")
    monkeypatch.setattr(build, "select_runner", lambda *args, **kwargs: ShellDriver(script))
    store = tmp_path / "store"
    store.mkdir(exist_ok=True)
    argv = ["build", "3.13.5", "--platform", "debian-12", "--arch", "x86_64", "--store", str(store)]
    return main([*argv, "--source-sha256", "a" * 64])


def test_buildfarm_build_removes_the_log_of_a_stored_build(tmp_path, temp_dir, monkeypatch, capsys):
    assert _build(tmp_path, monkeypatch, f"{WRITE_LOG}; {OK}") == 0
    assert "stored in" in capsys.readouterr().out
    assert list(temp_dir.iterdir()) == []


def test_buildfarm_build_names_the_stores_log_of_a_failed_build(tmp_path, temp_dir, monkeypatch, capsys):
    """The driver recorded the failure (logs/<cell>/<build>/build.log): the temporary copy goes."""
    recorded = tmp_path / "store/logs/3.13.5/debian-12/x86_64/1/build.log"
    record = f'mkdir -p "{recorded.parent}" && echo "every line of make" > "{recorded}"'
    assert _build(tmp_path, monkeypatch, f"{WRITE_LOG}; {record}; {FAILED}") == 1
    assert f"(full log: {recorded})" in capsys.readouterr().err
    assert list(temp_dir.iterdir()) == []


def test_buildfarm_build_keeps_and_names_the_log_the_store_lacks(tmp_path, temp_dir, monkeypatch, capsys):
    """No failure record in the store (the driver could not write it): the temporary copy stays."""
    assert _build(tmp_path, monkeypatch, f"{WRITE_LOG}; {FAILED}") == 1
    (log_dir,) = temp_dir.iterdir()
    assert f"(full log: {log_dir / 'build.log'})" in capsys.readouterr().err
    assert (log_dir / "build.log").read_text() == "every line of make\n"


CDK_STAGING = """
import sys, tempfile
tempfile.tempdir = sys.argv[1]
from buildfarm.images import staged_context
from infra.functions import stage_lambda_bundle
print(staged_context(), stage_lambda_bundle(), flush=True)
"""


def test_the_cdk_apps_staging_directories_go_when_it_exits(tmp_path):
    """Each `cdk synth` staged the Lambda bundle and the images' context in directories of
    its own; CDK copies both into cdk.out while the app runs, so they go when it exits."""
    root = Path(__file__).resolve().parents[3]
    environment = {**os.environ, "PYTHONPATH": f"{root / 'functions'}{os.pathsep}{root}"}
    staged = subprocess.run(
        [sys.executable, "-c", CDK_STAGING, str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
        env=environment,
    ).stdout.split()
    assert [Path(path).parent for path in staged] == [tmp_path, tmp_path]
    assert [Path(path).name.split("-")[1] for path in staged] == ["image", "lambda"]
    assert list(tmp_path.iterdir()) == []
