"""What the driver must never do, whatever it is given: leave its children running when it is
stopped, let the caller's ccache settings or a spec's prefix run commands, write over another
build's files in the store, end in a traceback, or leave a file half-rewritten.

Nothing here compiles CPython (one test compiles a one-line C file through ccache)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from builder_helpers import BUILD_PY, BUILDER_IMAGE
from driver import buildenv, errors, install, main, packages, preflight, process, upload
from driver import spec as driver_spec

SHA = "93e583f243454e6e9e4588ca2c2662206ad961659863277afcdb96801647d640"
CELL = "3.13.5/debian-12/x86_64/1"


def spec_dict(store: Path, **overrides: object) -> dict:
    spec = {
        "version": "3.13.5", "platform": "debian-12", "arch": "x86_64", "build": 1,
        "source": {"url": "file:///nonexistent/Python-3.13.5.tar.xz", "sha256": SHA},
        "prefix": "/opt/python/3.13.5", "optimization": "none", "store": str(store),
        "artifact_dir": "builds/" + CELL,
    }  # fmt: skip
    spec.update(overrides)
    return spec


def run_build_py(env: dict[str, str]) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("BUILDFARM_", "CCACHE_"))}
    environment.update(BUILDFARM_CHECK_BUILD_DEPS="0", **env)
    return subprocess.run([sys.executable, str(BUILD_PY)], env=environment, capture_output=True, text=True)


# --- stopping: no child outlives the build -----------------------------------------------------


def gone(pid: int, within: float = 10.0) -> bool:
    """Whether pid has ended (a zombie counts: nothing of it runs) within the given seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False


def kill_leftover(pid: int) -> None:
    try:
        if b"sleep" in Path(f"/proc/{pid}/cmdline").read_bytes():
            os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


def read_pids(path: Path, within: float = 20.0) -> list[int]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().endswith("\n"):
            return [int(word) for word in path.read_text().split()]
        time.sleep(0.05)
    raise AssertionError(f"the child never wrote {path}")


# The driver (its SIGTERM handler, execute()) with one phase: a command whose shell waits on a
# background job. argv: builder_image, work directory, pids file, spec.
INTERRUPTED_DRIVER = """
import json, signal, sys
sys.path.insert(0, sys.argv[1])
from driver import main, process
signal.signal(signal.SIGTERM, main._on_signal)
argv = ["sh", "-c", 'sleep 60 & echo $$ $! > "$0"; wait', sys.argv[3]]
main.PHASES = (("make", lambda build: process.run(build.log, "make", argv)),)
print(json.dumps(main.execute(json.loads(sys.argv[4]), main.load_platforms(), sys.argv[2])))
"""


def test_sigterm_stops_the_running_commands_whole_process_group(tmp_path):
    """Before the failure is recorded (and the work directory goes), nothing the phase started
    runs: neither the command nor what it started."""
    work, pids_file = tmp_path / "work", tmp_path / "pids"
    work.mkdir()
    spec = json.dumps(spec_dict(tmp_path / "store"))
    argv = [sys.executable, "-c", INTERRUPTED_DRIVER, str(BUILDER_IMAGE), str(work), str(pids_file), spec]
    environment = {"PATH": os.environ["PATH"]}
    driver = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=environment)
    shell, sleeper = read_pids(pids_file)
    try:
        driver.send_signal(signal.SIGTERM)
        output, _ = driver.communicate(timeout=30)
        assert '"reason": "interrupted (signal 15)"' in output, output
        assert gone(shell) and gone(sleeper), "a child of the interrupted command is still running"
        failure = json.loads((tmp_path / "store" / "logs" / CELL / "failure.json").read_text())
        assert failure["phase"] == "make"
    finally:
        kill_leftover(sleeper)


def test_a_failing_phase_stops_the_children_it_started(tmp_path, registry_json, monkeypatch):
    """A child started with process.start (as sbom's and gpgv's are), running when its phase
    fails: execute() ends its group before it records the failure."""
    for name in ("BUILDFARM_STOP_AFTER", "BUILDFARM_LOG_FILE"):
        monkeypatch.delenv(name, raising=False)
    pids = []

    def phase(_build):
        child = process.start(["sh", "-c", "sleep 60 & echo $$ $!; wait"])
        pids.extend(int(word) for word in child.stdout.readline().split())
        raise RuntimeError("the phase broke")

    monkeypatch.setattr(main, "PHASES", (("preflight", phase),))
    work = tmp_path / "work"
    work.mkdir()
    spec = spec_dict(tmp_path / "store")
    try:
        result = main.execute(spec, registry_json, str(work))
        assert result["ok"] is False and "the phase broke" in result["reason"]
        assert all(gone(pid) for pid in pids), "the phase's child outlived its failure"
        assert (tmp_path / "store" / "logs" / CELL / "failure.json").is_file()
    finally:
        for pid in pids:
            kill_leftover(pid)


# --- ccache: only the farm's settings reach the compiles --------------------------------------


@pytest.mark.skipif(not (shutil.which("ccache") and shutil.which("gcc")), reason="needs gcc and ccache")
def test_the_callers_ccache_settings_and_ccache_conf_change_no_compile(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "ccache.conf").write_text("prefix_command = /bin/false\ncompiler = /bin/false\n")
    shims = tmp_path / "ccache-bin"
    shims.mkdir()
    (shims / "gcc").symlink_to(shutil.which("ccache"))
    caller = {"CCACHE_DIR": str(cache), "CCACHE_PREFIX": "/bin/false", "CCACHE_COMPILER": "/bin/false",
              "CCACHE_PREFIX_CPP": "/bin/false", "CCACHE_CONFIGPATH": str(cache / "ccache.conf")}  # fmt: skip
    env = buildenv.ccache_env(buildenv.child_env(caller, str(tmp_path)), caller, str(shims), str(tmp_path))
    (tmp_path / "one.c").write_text("int one(void) { return 1; }\n")
    result = subprocess.run(["gcc", "-c", "one.c", "-o", "one.o"], cwd=tmp_path, env=env, capture_output=True)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "one.o").stat().st_size > 0


# --- the prefix: a plain absolute path, and data (never a macro) in the rpm spec ----------------


@pytest.mark.parametrize(
    "bad",
    ["/opt/%(touch /tmp/x)", "/opt/$(id)", "/", "/opt/a b", "/opt/py\r", "/opt/py\n", "/opt/python/",
     "//opt/python", "/opt/./python", "/opt/../etc", "/opt/pyth\u00f6n", "/opt/`id`", "/opt/a;b",
     "/" + "a" * 250, "opt/python", ""],
)  # fmt: skip
def test_a_prefix_that_is_not_a_plain_absolute_path_is_refused_by_name(registry_json, bad):
    text = json.dumps(spec_dict(Path("/tmp/store"), prefix=bad))
    with pytest.raises(errors.SpecError, match="prefix must be an absolute path") as refused:
        driver_spec.parse_spec(text, registry_json)
    assert repr(bad) in str(refused.value)


@pytest.mark.parametrize("good", ["/opt/python/3.13.5", "/opt/python/3.14.0rc2", "/usr/local/py_3+x-1.0"])
def test_plain_prefixes_are_accepted(registry_json, good):
    text = json.dumps(spec_dict(Path("/tmp/store"), prefix=good))
    assert driver_spec.parse_spec(text, registry_json)["prefix"] == good


def test_every_value_in_the_rpm_spec_is_text_not_a_macro(tmp_path):
    marker = tmp_path / "ran"
    staged = f"/w/st%(touch {marker})%{{z}}"
    text = packages.rpm_spec("3.13.5", 1, "x86_64", staged, "/opt/python/3.13.5", ["libpython3.13.so.1.0"])
    assert f'cp -a "/w/st%%(touch {marker})%%{{z}}/."' in text
    assert staged not in text
    if shutil.which("rpmspec"):
        (tmp_path / "python.spec").write_text(text)
        parsed = subprocess.run(
            ["rpmspec", "-P", str(tmp_path / "python.spec")], capture_output=True, text=True
        )
        assert parsed.returncode == 0, parsed.stderr
        assert f"{staged}/." in parsed.stdout  # the copy's source, literally
        assert not marker.exists()
    # A %global body is expanded twice, so %% cannot protect it: a prefix (the spec's check
    # already refuses one like it) that would go into the dependency filters is refused.
    prefix = f"/opt/py%(touch {marker})%{{x}}"
    with pytest.raises(errors.BuildError, match="rpm dependency pattern"):
        packages.rpm_spec("3.13.5", 1, "x86_64", "/w/st", prefix, [])
    assert not marker.exists()


# --- the store: nothing over another build's files ---------------------------------------------


def test_publishing_over_an_existing_build_is_a_would_overwrite(tmp_path):
    store = upload.LocalStore(str(tmp_path / "store"))
    cell = tmp_path / "store" / "builds" / CELL
    cell.mkdir(parents=True)
    (cell / "manifest.json").write_text("{}")
    artifact = tmp_path / "python.tar.gz"
    artifact.write_text("new")
    with pytest.raises(errors.WouldOverwrite, match="already exists"):
        store.publish("builds/" + CELL, [("python.tar.gz", str(artifact))])
    assert sorted(p.name for p in cell.parent.iterdir()) == ["1"]  # no staging directory left
    assert [p.name for p in cell.iterdir()] == ["manifest.json"]


def test_a_build_published_between_the_check_and_the_rename_is_not_replaced(tmp_path, monkeypatch):
    """Two builders of one cell: the other's rename lands after this one's lexists check."""
    store = upload.LocalStore(str(tmp_path / "store"))
    cell = tmp_path / "store" / "builds" / CELL
    artifact = tmp_path / "python.tar.gz"
    artifact.write_text("new")
    real_lexists = os.path.lexists

    def lexists_then_lose_the_race(path):
        found = real_lexists(path)
        if path == str(cell):
            cell.mkdir(parents=True)
            (cell / "manifest.json").write_text("{}")
        return found

    monkeypatch.setattr(upload.os.path, "lexists", lexists_then_lose_the_race)
    with pytest.raises(errors.WouldOverwrite, match="already exists"):
        store.publish("builds/" + CELL, [("python.tar.gz", str(artifact))])
    assert sorted(p.name for p in cell.parent.iterdir()) == ["1"]  # no staging directory left
    assert [p.name for p in cell.iterdir()] == ["manifest.json"]


def test_failure_records_are_written_create_only(tmp_path):
    store = upload.LocalStore(str(tmp_path / "store"))
    log_dir = tmp_path / "store" / "logs" / CELL
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    first.write_text("first")
    second.write_text("second")
    store.write_logs("logs/" + CELL, [("failure.json", str(first))])
    assert (log_dir / "failure.json").read_text() == "first"
    with pytest.raises(errors.WouldOverwrite, match="never overwritten"):
        store.write_logs("logs/" + CELL, [("failure.json", str(second))])
    assert (log_dir / "failure.json").read_text() == "first"
    assert [p.name for p in log_dir.iterdir()] == ["failure.json"]  # no temporary file left


# --- bad input: one error line and the spec-error exit status, no traceback -----------------------


@pytest.mark.parametrize(
    "key", ["version", "platform", "arch", "prefix", "store", "artifact_dir", "optimization"]
)
def test_a_spec_field_of_the_wrong_type_is_named(registry_json, key):
    spec = spec_dict(Path("/tmp/store"))
    spec[key] = [1]
    with pytest.raises(errors.SpecError, match=rf"{key} must be a string, not \[1\]"):
        driver_spec.parse_spec(json.dumps(spec), registry_json)


def test_the_driver_refuses_a_platform_list_in_one_line(tmp_path):
    spec = spec_dict(tmp_path / "store", platform=["debian-12"])
    result = run_build_py({"BUILD_SPEC": json.dumps(spec), "BUILDFARM_WORK_DIR": str(tmp_path / "w")})
    assert result.returncode == 2
    assert result.stdout == "buildfarm: error: platform must be a string, not ['debian-12']\n"
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "store").exists()


def test_an_unusable_work_directory_is_a_setup_error(tmp_path):
    (tmp_path / "file").write_text("")
    work_root = tmp_path / "file" / "work"
    spec = spec_dict(tmp_path / "store")
    result = run_build_py({"BUILD_SPEC": json.dumps(spec), "BUILDFARM_WORK_DIR": str(work_root)})
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout.startswith(f"buildfarm: error: cannot create a work directory under {work_root}: ")
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "store").exists()


# --- rewriting a file: whole or not at all ----------------------------------------------------


def test_a_failing_rewrite_leaves_the_file_as_it_was(tmp_path):
    build = SimpleNamespace(prefix="/opt/python/3.13.5", tree=str(tmp_path), log=SimpleNamespace(write=print))
    path = tmp_path / "python3.pc"
    path.write_text("prefix=/opt/python/3.13.5\n")
    path.chmod(0o640)

    def broken(_text, _prefix):
        raise ValueError("no prefix line")

    with pytest.raises(ValueError, match="no prefix line"):
        install.rewrite(build, str(path), broken)
    assert path.read_text() == "prefix=/opt/python/3.13.5\n"
    install.rewrite(build, str(path), lambda text, prefix: text.replace(prefix, "${pcfiledir}/../.."))
    assert path.read_text() == "prefix=${pcfiledir}/../..\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["python3.pc"]


# --- tools: the build environment's, not the caller's ----------------------------------------


def test_preflight_looks_for_the_tools_on_the_build_environments_path(tmp_path, monkeypatch):
    monkeypatch.setenv("BUILDFARM_CHECK_BUILD_DEPS", "0")
    empty = tmp_path / "bin"
    empty.mkdir()
    build = SimpleNamespace(spec=spec_dict(tmp_path / "store"), platform={"package_format": "deb"},
                            env={"PATH": str(empty)}, log=None)  # fmt: skip
    with pytest.raises(errors.BuildError, match="missing build tools: make tar strip readelf dpkg-deb"):
        preflight.preflight(build)


def test_preflight_names_a_missing_configure_shell(tmp_path, monkeypatch):
    monkeypatch.setenv("BUILDFARM_CHECK_BUILD_DEPS", "0")
    tools = tmp_path / "bin"
    tools.mkdir()
    for name in (*preflight.TOOLS, *preflight.PACKAGE_TOOLS["deb"]):
        (tools / name).write_text("#!/bin/sh\n")
        (tools / name).chmod(0o755)
    shell = tmp_path / "no" / "dash"
    build = SimpleNamespace(spec=spec_dict(tmp_path / "store"), env={"PATH": str(tools)}, log=None,
                            platform={"package_format": "deb", "configure_shell": str(shell)})  # fmt: skip
    with pytest.raises(errors.BuildError, match="missing build tools: " + str(shell) + "$"):
        preflight.preflight(build)
    shell.parent.mkdir()
    shell.write_text("#!/bin/sh\n")
    shell.chmod(0o755)
    preflight.preflight(build)  # every tool there now
