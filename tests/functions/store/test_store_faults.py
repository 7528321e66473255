"""A directory store on a full or a read-only filesystem (a real small tmpfs, mounted here):
every failure is one StoreIOError line naming what was being written, no temporary file is
left behind, and `buildfarm run` ends in one line with its claims released, so a later run
builds the cell once there is space again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from buildfarm.claims import release_claims
from buildfarm.cli import main
from buildfarm.config import FarmConfig
from buildfarm.layout import claim_key
from buildfarm.plan import plan
from buildfarm.store import LocalStore, StoreIOError

from ..conftest import NOW, write_releases

REPO = Path(__file__).resolve().parents[3]
CELL = ("3.13.5", "debian-12", "x86_64")
REQUEST = {"versions": ["3.13.5"], "platforms": ["debian-12"], "arches": ["x86_64"]}
FS_SIZE = 4 * 1024 * 1024


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True)


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs, unmounted after the test."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "fs"
    mount.mkdir()
    _mount("-t", "tmpfs", "-o", f"size={FS_SIZE},mode=0755", "tmpfs", str(mount))
    try:
        yield mount
    finally:
        subprocess.run(["umount", "--lazy", str(mount)], check=True)


def fill(directory: Path) -> Path:
    """Fill the filesystem with one file (as another program would): nothing more fits."""
    filler = directory / "filler"
    try:
        with open(filler, "wb") as handle:
            while True:
                handle.write(b"\0" * 65536)
    except OSError:
        pass
    return filler


def remount_read_only(mount: Path) -> None:
    _mount("-o", "remount,ro", str(mount))


def temp_files(root: Path) -> list[Path]:
    return [path for path in root.rglob("*") if path.name.startswith(".tmp-")]


def free_bytes(path: Path) -> int:
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize


def test_a_write_larger_than_the_disk_fails_in_one_line_and_frees_its_space(small_fs):
    store = LocalStore(small_fs / "store")
    store.put("versions.json", b"{}")
    before = free_bytes(small_fs)
    with pytest.raises(StoreIOError) as caught:
        store.put("builds/3.13.5/debian-12/x86_64/1/python.tar.gz", b"x" * (FS_SIZE + 1))
    assert str(caught.value) == (
        "No space left on device (writing builds/3.13.5/debian-12/x86_64/1/python.tar.gz)"
    )
    assert temp_files(small_fs) == []
    assert free_bytes(small_fs) == before  # the half-written temp file is gone
    assert not store.exists("builds/3.13.5/debian-12/x86_64/1/python.tar.gz")
    store.put("versions.json", b'{"still": "writable"}')


def test_a_full_disk_fails_each_write_in_one_line(small_fs):
    store = LocalStore(small_fs / "store")
    etag = store.put("versions.json", b"{}")
    fill(small_fs)
    with pytest.raises(StoreIOError) as caught:
        store.put_json("versions.json", {"python_versions": ["3.13.5"] * 2000}, if_match=etag)
    assert str(caught.value) == "No space left on device (writing versions.json)"
    assert store.read("versions.json")[0] == b"{}"  # the old content, whole
    assert temp_files(small_fs) == []


def test_a_read_only_store_reads_and_refuses_writes_in_one_line(small_fs):
    store = LocalStore(small_fs / "store")
    etag = store.put("versions.json", b"{}")
    store.put("claims/3.13.5/debian-12/x86_64.json", b"{}", if_none_match=True)  # makes .locks/
    remount_read_only(small_fs)
    assert store.read("versions.json") == (b"{}", etag)
    assert [info.key for info in store.list("")] == ["claims/3.13.5/debian-12/x86_64.json", "versions.json"]
    cases = [
        (lambda: store.put("index.html", b"<html>"), "writing index.html"),
        (lambda: store.put("versions.json", b"[]", if_match=etag), "locking versions.json"),
        (lambda: store.delete("versions.json"), "deleting versions.json"),
        (lambda: LocalStore(small_fs / "new").create(), "creating the directory"),
    ]
    for write, doing in cases:
        with pytest.raises(StoreIOError) as caught:
            write()
        assert str(caught.value) == f"Read-only file system ({doing})"
    assert temp_files(small_fs) == []


def test_claims_are_released_on_a_full_disk(small_fs, registry):
    store = LocalStore(small_fs / "store")
    config = FarmConfig.defaults(registry, store=store.location, releases_url="http://127.0.0.1:9/api")
    write_releases(store, ["3.13.5"])
    (item,) = plan(REQUEST, store, config, "exec-1", NOW).items
    filler = fill(small_fs)
    # The released marker does not fit: the marker is deleted instead (a delete needs no space).
    assert release_claims(store, [CELL], execution_id="exec-1", now=NOW) == 1
    assert not store.exists(claim_key(*CELL))
    assert temp_files(small_fs) == []
    filler.unlink()
    again = plan(REQUEST, store, config, "exec-2", NOW)
    assert [i.cell for i in again.items] == [item.cell]  # not held by exec-1's claim


# -- `buildfarm run` ------------------------------------------------------------------------

# Runs `buildfarm run` in its own process (a run that ends is a dead process, as in real use)
# with a stand-in runner: "fill" writes the tarball until the disk is full and fails, as a
# driver's upload does; "build" leaves a small complete build (tests.functions.conftest).
RUN_WITH_FAKE_RUNNER = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    import buildfarm.farm
    from buildfarm.cli import main
    from buildfarm.runners.base import BuildResult
    from buildfarm.store import LocalStore
    from tests.functions.conftest import fake_build

    class FakeRunner:
        name = "fake"

        def __init__(self, platform_id):
            self.platform_id = platform_id

        def run(self, spec, on_phase=None, output=None, on_progress=None):
            if sys.argv[1] == "build":
                fake_build(LocalStore(spec.store), spec)
                return BuildResult(True, None, None, None, {})
            tarball = Path(spec.store, spec.artifact_dir, "python.tar.gz")
            tarball.parent.mkdir(parents=True, exist_ok=True)
            try:
                with open(tarball, "wb") as handle:
                    while True:
                        handle.write(b"\\0" * 65536)
            except OSError as error:
                return BuildResult(False, "upload", str(error), None, {})

    buildfarm.farm.select_runner = lambda platform, requested, arch: FakeRunner(platform)
    sys.exit(main(["run", *sys.argv[2:]]))
    """
)


def run_in_a_process(tmp_path: Path, runner: str, store: Path) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "run_with_fake_runner.py"
    script.write_text(RUN_WITH_FAKE_RUNNER)
    argv = ["--store", str(store), "--versions", "3.13.5", "--platforms", "debian-12", "--arches", "x86_64"]
    argv.append("--no-runtimes")  # the fake runner's tarballs make no runtime (runs build both since fedd6c7)
    env = {**os.environ, "BUILDFARM_RELEASES_URL": "http://127.0.0.1:9/api", "PYTHONPATH": str(REPO)}
    env["TMPDIR"] = str(tmp_path)  # the run's kept log directory (buildfarm-run-*) goes there
    env.pop("BUILDFARM_STORE", None)
    return subprocess.run(
        [sys.executable, str(script), runner, *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def live_claims(store: Path) -> list[str]:
    return [
        str(path) for path in store.glob("claims/**/*.json") if not json.loads(path.read_text())["released"]
    ]


def test_run_on_a_disk_that_fills_up_ends_in_one_line_and_releases_its_claims(small_fs, tmp_path):
    store = small_fs / "store"
    write_releases(LocalStore(store), ["3.13.5"])
    first = run_in_a_process(tmp_path, "fill", store)
    assert first.returncode == 2, first.stdout + first.stderr
    # The run's own warnings (python.org unreachable, the cell not published), then the error.
    assert "Traceback" not in first.stderr, first.stderr
    *warnings, error = first.stderr.splitlines()
    assert error.startswith(f"buildfarm run: error: store {store}: No space left on device (writing "), error
    assert not any("error" in line for line in warnings), warnings
    assert live_claims(store) == []
    assert temp_files(small_fs) == []
    assert list(store.glob("runs/*.json")), "the run stays open for recovery"

    # Space again: the next run finalizes the dead one and builds the cell (no claim holds it).
    for partial in store.glob("builds/**/python.tar.gz"):
        partial.unlink()
    second = run_in_a_process(tmp_path, "build", store)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "1 published, 0 failed" in second.stdout
    versions = json.loads((store / "versions.json").read_text())
    assert versions["builds"]["3.13.5"]["debian-12"]["x86_64"]["build"] == 2  # past the failed 1
    assert live_claims(store) == [] and list(store.glob("runs/*.json")) == []


def test_run_on_a_read_only_store_ends_in_one_line_having_claimed_nothing(small_fs, capsys, monkeypatch):
    store = small_fs / "store"
    write_releases(LocalStore(store), ["3.13.5"])
    remount_read_only(small_fs)

    def no_build(*args: object) -> None:
        raise AssertionError("a runner ran on a read-only store")

    class Runner:
        name, platform_id, run = "fake", "debian-12", no_build

    monkeypatch.setattr("buildfarm.farm.select_runner", lambda platform, requested, arch: Runner())
    monkeypatch.setenv("BUILDFARM_RELEASES_URL", "http://127.0.0.1:9/api")
    argv = ["run", "--versions", "3.13.5", "--platforms", "debian-12", "--arches", "x86_64"]
    assert main([*argv, "--store", str(store)]) == 2
    # At most the run's own warnings (python.org unreachable, when logging reaches stderr),
    # then the one error line.
    *warnings, error = capsys.readouterr().err.splitlines()
    assert error.startswith(f"buildfarm run: error: store {store}: Read-only file system ("), error
    assert not any("error" in line.lower() or "Traceback" in line for line in warnings), warnings
    assert not (store / "claims").exists()
    # A store that cannot be created is refused the same way, before anything is planned.
    assert main([*argv, "--store", str(small_fs / "new")]) == 2
    assert capsys.readouterr().err == (
        f"buildfarm run: error: store {small_fs / 'new'}: Read-only file system (creating the directory)\n"
    )
