"""A store that `run`, `reindex`, `plan` and `status` cannot use ends each the same way: one
line naming the store, exit 2. `run` leaves nothing behind when it stops early: no empty
buildfarm-run-* log directory, no empty store directory it made itself. `reindex` names each
key it wrote once, however many rounds a concurrent publisher made it take, and says when it
stopped rendering again (after 10 rounds).

Real directory stores published by the real publisher, and the real `main()`; only the runner
is replaced (it must never run: each case stops before anything is built)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from buildfarm.cli import main
from buildfarm.layout import VERSIONS_KEY
from buildfarm.store import LocalStore

from ..catalog.test_derived_rounds import ConcurrentPublisher

RUN = ["run", "--versions", "3.13.5", "--platforms", "debian-12", "--arches", "x86_64", "--no-runtimes"]


def _write(content: bytes) -> Callable[[Path], None]:
    return lambda root: (root / VERSIONS_KEY).write_bytes(content)


def _symlink_loop(root: Path) -> None:
    """versions.json unreadable (ELOOP): a permission bit would not stop root, this does."""
    (root / VERSIONS_KEY).unlink()
    (root / VERSIONS_KEY).symlink_to(root / VERSIONS_KEY)


BROKEN = [
    ("not-json", _write(b'{"builds": '), "/versions.json is not valid JSON: "),
    ("not-an-object", _write(b"[]"), "/versions.json is not a JSON object"),
    ("malformed", _write(b'{"builds": {"3.13.5": 5}}'), "versions.json builds/3.13.5: "),
    ("unreadable", _symlink_loop, "Too many levels of symbolic links (reading versions.json)"),
]


class NeverRuns:
    name, platform_id = "fake", "debian-12"

    def run(self, *args: object, **kwargs: object) -> None:
        raise AssertionError("a runner ran for a store that cannot be used")


@pytest.fixture
def runner_here(monkeypatch: pytest.MonkeyPatch, offline_cli: None) -> None:
    """debian-12/x86_64 has a runner here, so `run` goes on to the store."""
    monkeypatch.setattr("buildfarm.farm.select_runner", lambda platform, requested, arch: NeverRuns())
    monkeypatch.delenv("BUILDFARM_PUBLIC_BASE_URL", raising=False)


def _one_error(capsys: pytest.CaptureFixture[str], command: str) -> str:
    """The error line of a command; nothing else on stderr but warnings (python.org is away)."""
    *others, error = capsys.readouterr().err.splitlines()
    assert not any("error" in line.lower() or "Traceback" in line for line in others), others
    assert error.startswith(f"buildfarm {command}: error: "), error
    return error.removeprefix(f"buildfarm {command}: error: ")


@pytest.mark.parametrize(("breaks", "named"), [case[1:] for case in BROKEN], ids=[c[0] for c in BROKEN])
def test_run_reindex_plan_and_status_of_a_broken_store_exit_alike(
    published_store, runner_here, temp_dir, capsys, breaks, named
) -> None:
    root = published_store.root
    breaks(root)
    run_status = main([*RUN, "--store", str(root)])
    run_error = _one_error(capsys, "run")
    reindex_status = main(["reindex", "--store", str(root)])
    reindex_error = _one_error(capsys, "reindex")
    plan_status = main(["plan", *RUN[1:-1], "--store", str(root)])
    plan_error = _one_error(capsys, "plan")
    status_status = main(["status", "--store", str(root)])
    status_error = _one_error(capsys, "status")
    assert (run_status, reindex_status, plan_status, status_status) == (2, 2, 2, 2)
    errors = (run_error, reindex_error, plan_error, status_error)
    assert len(set(errors)) == 1, errors
    assert run_error.startswith(f"store {root}: ") and named in run_error, run_error
    assert list(temp_dir.iterdir()) == [], "run left its log directory behind"


def test_run_and_reindex_of_a_store_that_is_a_file_exit_alike(runner_here, tmp_path, temp_dir, capsys):
    store = tmp_path / "store"
    store.write_text("not a directory\n")
    assert main([*RUN, "--store", str(store)]) == 2
    assert _one_error(capsys, "run") == f"store {str(store)!r} is not a directory"
    assert main(["reindex", "--store", str(store)]) == 2
    assert _one_error(capsys, "reindex") == f"store {str(store)!r} is not a directory"
    assert store.read_text() == "not a directory\n" and list(temp_dir.iterdir()) == []


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_run_with_a_file_mirror_that_is_not_a_directory_stops_first(
    tmp_path, temp_dir, capsys, monkeypatch, how
) -> None:
    """What scripts/setup without ../shared/cpython-src led to: every cell failed at its fetch.
    Now one line names the option or the variable, before any cell or store."""
    mirror, store = f"file://{tmp_path}/.cache/mirror", tmp_path / "dist"
    monkeypatch.delenv("BUILDFARM_SOURCE_MIRROR", raising=False)
    if how == "flag":
        argv = [*RUN, "--store", str(store), "--source-mirror", mirror]
        named = f"--source-mirror {mirror}: no such directory"
    else:
        monkeypatch.setenv("BUILDFARM_SOURCE_MIRROR", mirror)
        argv, named = [*RUN, "--store", str(store)], f"BUILDFARM_SOURCE_MIRROR {mirror}: no such directory"
    assert main(argv) == 2
    assert _one_error(capsys, "run").startswith(named)
    assert not store.exists() and list(temp_dir.iterdir()) == []


def test_run_stopped_before_its_first_write_leaves_no_store_behind(
    runner_here, tmp_path, temp_dir, capsys, monkeypatch
) -> None:
    """`run` makes a missing store, then refuses a signing key it cannot create: the store it
    made is empty and goes again, so `status` says there is none rather than an empty one."""
    blocker = tmp_path / "file.pem"
    blocker.write_text("a file, not a directory\n")
    monkeypatch.setenv("BUILDFARM_SIGNING_KEY", str(blocker / "sub.pem"))
    monkeypatch.delenv("BUILDFARM_KMS_KEY_ID", raising=False)
    store = tmp_path / "new" / "store"
    assert main([*RUN, "--store", str(store)]) == 2
    assert "cannot create it" in _one_error(capsys, "run")
    assert not store.exists() and list(temp_dir.iterdir()) == []
    assert main(["status", "--store", str(store)]) == 2
    assert "does not exist" in _one_error(capsys, "status")


def test_run_keeps_a_store_that_was_there(published_store, runner_here, temp_dir, capsys):
    """Only what the run made goes: an existing store stays, broken or not, as it was."""
    root = published_store.root
    (root / VERSIONS_KEY).write_bytes(b"[]")
    before = sorted(path.relative_to(root) for path in root.rglob("*"))
    assert main([*RUN, "--store", str(root)]) == 2
    capsys.readouterr()
    assert sorted(path.relative_to(root) for path in root.rglob("*")) == before


def _reindex_racing(published_store: LocalStore, monkeypatch: pytest.MonkeyPatch, writes: int):
    racing = ConcurrentPublisher(published_store.root, writes)
    monkeypatch.setattr("buildfarm.cli.store_cmds.open_store", lambda location: racing)
    status = main(["reindex", "--store", str(racing.root), "--base-url", "https://cdn.example.org/py"])
    return status, racing


def test_reindex_names_each_key_once_though_it_wrote_some_twice(published_store, monkeypatch, capsys):
    status, racing = _reindex_racing(published_store, monkeypatch, writes=1)
    out = capsys.readouterr().out
    assert status == 0
    assert racing.index_writes == 2  # versions.json changed once: a second round
    prefix = f"reindexed {racing.root} for https://cdn.example.org/py: wrote "
    assert out.startswith(prefix), out
    keys = out.removeprefix(prefix).strip().split(", ")
    assert keys == list(dict.fromkeys(keys)), keys  # each once
    # In the order first written: the same as a reindex that needed one round.
    assert keys[-2:] == ["download-metadata/debian-12.json", "index.html"], keys


def test_reindex_that_never_catches_up_says_so(published_store, monkeypatch, caplog):
    with caplog.at_level("WARNING", logger="buildfarm.catalog.derived"):
        status, racing = _reindex_racing(published_store, monkeypatch, writes=100)
    assert status == 0  # the publisher that keeps changing versions.json rewrites them itself
    assert racing.index_writes == 10
    assert any("10 times in a row: stopped" in r.getMessage() for r in caplog.records), caplog.text
