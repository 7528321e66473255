"""The chroot and docker runners' outbox (runners/outbox.py): the driver writes into an empty
private directory mounted where the store would be, and the runner publishes only the spec's
own build (or failure record) from it, create-only, plain files only, never through a link the
build planted. Real files and the real driver's directory store; no root, no mounts."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from buildfarm.models import BuildSpec
from buildfarm.runners.base import BuildResult, PreflightError, isolated_driver

CELL = "builds/3.13.5/debian-12/x86_64/1"
LOGS = "logs/3.13.5/debian-12/x86_64/1"
OK = BuildResult(True, None, None, None, {"make": 1.0})
FAILED = BuildResult(False, "make", "make failed", None, {})


def spec_in(tmp_path: Path) -> BuildSpec:
    return BuildSpec.model_validate(
        {
            "version": "3.13.5", "platform": "debian-12", "arch": "x86_64", "build": 1,
            "source": {"url": "https://mirror.invalid/3.13.5/Python-3.13.5.tar.xz", "sha256": "a" * 64},
            "prefix": "/opt/python/3.13.5", "optimization": "none", "store": str(tmp_path / "store"),
            "artifact_dir": CELL, "execution_id": "local-1",
        }
    )  # fmt: skip


@pytest.fixture
def driver(tmp_path, temp_dir):
    made = isolated_driver(spec_in(tmp_path))
    yield made
    made.outbox.discard()
    assert not made.outbox.work.exists()


def left(driver, key: str, files: dict[str, str]) -> Path:
    """What the driver leaves in its outbox under key."""
    directory = driver.outbox.directory / key
    directory.mkdir(parents=True)
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


def published(tmp_path: Path) -> dict[str, str]:
    store = tmp_path / "store"
    return {p.relative_to(store).as_posix(): p.read_text() for p in sorted(store.rglob("*")) if p.is_file()}


def test_the_driver_gets_an_empty_outbox_not_the_store(tmp_path, driver):
    (tmp_path / "store" / "versions.json").write_text("{}")
    assert [m.target for m in driver.mounts if m.source == driver.outbox.directory] == ["/buildfarm/store"]
    assert not any(m.source == tmp_path / "store" for m in driver.mounts)
    assert list(driver.outbox.directory.iterdir()) == []
    assert tmp_path / "store" not in driver.outbox.directory.parents


def test_a_built_cell_is_published_from_the_outbox_and_nothing_else(tmp_path, driver):
    left(driver, CELL, {"python.tar.gz": "tar", "build.log": "log", "manifest.json": "{}"})
    left(driver, "builds/3.13.5/debian-12/x86_64/2", {"manifest.json": "another build"})
    (driver.outbox.directory / "versions.json").write_text("a catalog")
    assert driver.outbox.publish(OK, io.StringIO()) == OK
    assert published(tmp_path) == {
        f"{CELL}/build.log": "log",
        f"{CELL}/manifest.json": "{}",
        f"{CELL}/python.tar.gz": "tar",
    }


def test_a_build_that_appeared_meanwhile_is_never_overwritten(tmp_path, driver):
    (tmp_path / "store" / CELL).mkdir(parents=True)
    (tmp_path / "store" / CELL / "manifest.json").write_text("theirs")
    left(driver, CELL, {"manifest.json": "ours"})
    result = driver.outbox.publish(OK, io.StringIO())
    assert (result.ok, result.failed_phase) == (False, "upload")
    assert result.reason == f"{tmp_path / 'store' / CELL} already exists; builds are never overwritten"
    assert published(tmp_path) == {f"{CELL}/manifest.json": "theirs"}


def test_a_taken_build_number_fails_the_preflight_before_any_outbox(tmp_path, temp_dir):
    (tmp_path / "store" / CELL).mkdir(parents=True)
    with pytest.raises(PreflightError, match="already exists; builds are never overwritten"):
        isolated_driver(spec_in(tmp_path))


@pytest.mark.parametrize(
    ("plant", "why"),
    [
        (lambda d, secret: (d / "manifest.json").symlink_to(secret), "manifest.json is not a regular file"),
        (lambda d, secret: os.mkfifo(d / "manifest.json"), "manifest.json is not a regular file"),
        (lambda d, secret: (d / "sub").mkdir(), "sub is not a regular file"),
        (lambda d, secret: (d / ".hidden").write_text("x"), ".hidden: not a build file's name"),
    ],
    ids=["link", "fifo", "directory", "hidden"],
)
def test_anything_but_plain_files_publishes_nothing(tmp_path, driver, plant, why):
    secret = tmp_path / "secret"
    secret.write_text("this machine's")
    directory = left(driver, CELL, {"python.tar.gz": "tar"})
    plant(directory, secret)
    result = driver.outbox.publish(OK, io.StringIO())
    assert (result.ok, result.failed_phase) == (False, "upload")
    assert why in (result.reason or "")
    assert published(tmp_path) == {}


def test_a_linked_directory_on_the_way_is_not_followed(tmp_path, driver):
    elsewhere = tmp_path / "elsewhere" / "x86_64" / "1"
    elsewhere.mkdir(parents=True)
    (elsewhere / "manifest.json").write_text("not the build's")
    (driver.outbox.directory / "builds" / "3.13.5" / "debian-12").mkdir(parents=True)
    (driver.outbox.directory / "builds" / "3.13.5" / "debian-12" / "x86_64").symlink_to(elsewhere.parent)
    result = driver.outbox.publish(OK, io.StringIO())
    assert not result.ok and "x86_64 in builds/3.13.5/debian-12/x86_64/1 is not a directory" in result.reason
    assert published(tmp_path) == {}


def test_a_success_that_left_no_build_is_a_failure(tmp_path, driver):
    result = driver.outbox.publish(OK, io.StringIO())
    assert (result.ok, result.failed_phase) == (False, "upload")
    assert f"the driver reported success but left no {CELL}/manifest.json" in result.reason


def test_a_failed_build_publishes_its_failure_record_only(tmp_path, driver):
    left(driver, LOGS, {"build.log": "log", "failure.json": "{}"})
    left(driver, CELL, {"manifest.json": "a failed driver's build"})
    assert driver.outbox.publish(FAILED, io.StringIO()) == FAILED
    assert published(tmp_path) == {f"{LOGS}/build.log": "log", f"{LOGS}/failure.json": "{}"}


def test_a_failure_record_never_replaces_one(tmp_path, driver):
    (tmp_path / "store" / LOGS).mkdir(parents=True)
    (tmp_path / "store" / LOGS / "failure.json").write_text("the first")
    left(driver, LOGS, {"failure.json": "a second"})
    output = io.StringIO()
    assert driver.outbox.publish(FAILED, output) == FAILED
    assert "cannot write the failure record to the store" in output.getvalue()
    assert published(tmp_path) == {f"{LOGS}/failure.json": "the first"}
