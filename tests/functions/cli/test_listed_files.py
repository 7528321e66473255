"""A file versions.json lists that the store does not hold (deleted, never copied) is found by
`status`, `reindex` and a `run` that skips the cell, by listing keys (one listing per version,
nothing read); `buildfarm verify` stays the check of their sha256s. status shows each missing
file, reindex refuses to re-sign and re-index such a catalog (writing nothing), run names the
cell and the key; all three end with the same line, exit 2.

Real stores (a directory, and S3 under moto) published by the real publisher; the real main()."""

from __future__ import annotations

import json

import pytest

from buildfarm.attest.listed_files import MissingFile, missing_files
from buildfarm.catalog import read_versions
from buildfarm.cli import main
from buildfarm.store import LocalStore

from ..conftest import all_keys, write_published_matrix

CELL = "3.13.5/debian-12/x86_64"
BUILD_DIR = f"builds/{CELL}/1"
TARBALL = f"{BUILD_DIR}/python-3.13.5-debian-12-x86_64.tar.gz"
RUN = ["run", "--versions", "3.13.5", "--platforms", "debian-12", "--arches", "x86_64", "--no-runtimes"]


class NeverRuns:
    name, platform_id = "fake", "debian-12"

    def run(self, *args: object, **kwargs: object) -> None:
        raise AssertionError("a runner ran for a cell that is published")


@pytest.fixture
def runner_here(monkeypatch: pytest.MonkeyPatch, offline_cli: None) -> None:
    """debian-12/x86_64 has a runner here, so `run` plans it (and skips it: published)."""
    monkeypatch.setattr("buildfarm.farm.select_runner", lambda platform, requested, arch: NeverRuns())
    monkeypatch.delenv("BUILDFARM_PUBLIC_BASE_URL", raising=False)


@pytest.fixture
def lost_tarball(published_store: LocalStore) -> LocalStore:
    """The published 3.13.5 debian-12/x86_64 build without its tarball."""
    published_store.delete(TARBALL)
    return published_store


def _error(capsys: pytest.CaptureFixture[str], command: str) -> str:
    *_, last = capsys.readouterr().err.splitlines()
    assert last.startswith(f"buildfarm {command}: error: "), last
    return last.removeprefix(f"buildfarm {command}: error: ")


def test_missing_files_lists_keys_and_reads_nothing(lost_tarball) -> None:
    document, _ = read_versions(lost_tarball)
    lost_tarball.calls.clear()
    assert missing_files(lost_tarball, document) == [MissingFile(BUILD_DIR, TARBALL)]
    assert dict(lost_tarball.calls) == {"list": 1}  # one version: one listing
    assert missing_files(lost_tarball, document, wanted=lambda directory: directory != BUILD_DIR) == []


def test_missing_files_of_an_s3_store(s3_store) -> None:
    """Two versions, one listing each; the manifest counts as a listed file."""
    write_published_matrix(s3_store, ["3.13.5", "3.12.8"], ["debian-12"], ["x86_64"])
    s3_store.put(TARBALL, b"tarball")
    s3_store.put(f"{BUILD_DIR}/manifest.json", b"{}")
    other = "builds/3.12.8/debian-12/x86_64/1"
    document, _ = read_versions(s3_store)
    s3_store.calls.clear()
    assert missing_files(s3_store, document) == [
        MissingFile(other, f"{other}/manifest.json"),
        MissingFile(other, f"{other}/python-3.12.8-debian-12-x86_64.tar.gz"),
    ]
    assert dict(s3_store.calls) == {"list": 2}


def test_status_shows_the_missing_file_and_exits_2(lost_tarball, capsys) -> None:
    root = lost_tarball.root
    assert main(["status", "--store", str(root)]) == 2
    captured = capsys.readouterr()
    assert "2 published cells, 1 versions" in captured.out  # the matrix still shows
    shown = captured.out.split("listed in versions.json but not in the store:\n", 1)[1]
    assert [CELL, "1", TARBALL] in [line.split() for line in shown.splitlines()]
    error = captured.err.splitlines()[-1]
    assert error.startswith(f"buildfarm status: error: store {root}: versions.json lists 1 file(s) ")
    assert f"{CELL} build 1: {TARBALL}" in error

    assert main(["status", "--store", str(root), "--json"]) == 2
    missing = json.loads(capsys.readouterr().out)["missing"]
    assert missing == [{"cell": CELL, "build": "1", "key": TARBALL}]


def test_status_of_a_whole_store_lists_nothing_missing(published_store, capsys) -> None:
    assert main(["status", "--store", str(published_store.root), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["missing"] == []
    assert main(["status", "--store", str(published_store.root)]) == 0
    assert "not in the store" not in capsys.readouterr().out


def test_reindex_refuses_a_catalog_with_a_missing_file_and_writes_nothing(lost_tarball, capsys) -> None:
    before = all_keys(lost_tarball)
    argv = ["reindex", "--store", str(lost_tarball.root), "--base-url", "https://cdn.example.org/py"]
    assert main(argv) == 2
    error = _error(capsys, "reindex")
    assert error.startswith(f"store {lost_tarball.root}: versions.json lists 1 file(s) "), error
    assert f"{CELL} build 1: {TARBALL}" in error
    assert all_keys(lost_tarball) == before


def test_status_reindex_and_a_run_that_builds_nothing_end_alike(lost_tarball, runner_here, capsys) -> None:
    root = str(lost_tarball.root)
    assert main([*RUN, "--store", root]) == 2
    run_error = _error(capsys, "run")
    assert main(["reindex", "--store", root]) == 2
    reindex_error = _error(capsys, "reindex")
    assert main(["status", "--store", root]) == 2
    assert run_error == reindex_error == _error(capsys, "status")
    assert f"{CELL} build 1: {TARBALL}" in run_error


def test_a_run_that_builds_nothing_of_a_whole_store_succeeds(published_store, runner_here, capsys) -> None:
    assert main([*RUN, "--store", str(published_store.root)]) == 0
    assert "0 published, 0 failed, 1 skipped" in capsys.readouterr().out
