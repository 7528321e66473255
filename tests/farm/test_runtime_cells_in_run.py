"""Runtime cells in `buildfarm run` without a real build (fast): a dry run lists them and writes
nothing, --no-runtimes leaves them out, and a runtime build that fails (here: its Python's tarball
is not in the store) fails its cell with the reason, releases its claim and publishes nothing;
the run then names that tarball, which versions.json lists, as missing and exits 2 (a store
failure, as reindex and status). tests/farm/test_runtime_run.py builds one for real."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from runtime_definitions import write_svc_definitions

from buildfarm.catalog.versions_json import CatalogCell, update_versions
from buildfarm.cli import main
from buildfarm.store import LocalStore

NOW = datetime(2026, 11, 22, 10, 0, 0, tzinfo=UTC)
RUN = ["run", "--versions", "3.13.5", "--platforms", "debian-12", "--arches", "x86_64"]


class UnusedRunner:
    """The Python cell is published: no runner may be asked to build it."""

    name = "unused"

    def run(self, *args: object, **kwargs: object) -> None:
        raise AssertionError("a published Python cell was built")


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """3.13.5 debian-12 x86_64 published (its tarball is listed, not stored); the svc runtime's
    definitions in $BUILDFARM_RUNTIMES."""
    root = tmp_path / "store"
    store = LocalStore(root)
    store.create()
    release = {
        "version": "3.13.5",
        "sha256": "ab" * 32,
        "url": "https://example.invalid/Python-3.13.5.tar.xz",
    }
    store.put_json("releases.json", {"schema_version": 1, "updated": None, "checked": None, "source": "test",
                                     "releases": {"3.13.5": release}})  # fmt: skip
    directory = "builds/3.13.5/debian-12/x86_64/1"
    entry = CatalogCell(
        build=1,
        published="2026-11-22T09:00:00Z",
        manifest=f"{directory}/manifest.json",
        artifacts=[{"type": "tarball", "key": f"{directory}/python.tar.gz", "sha256": "ef" * 32, "size": 9}],
    )
    update_versions(store, {("3.13.5", "debian-12", "x86_64"): entry}, NOW)
    definitions = write_svc_definitions(tmp_path / "definitions")
    monkeypatch.setenv("BUILDFARM_RUNTIMES", str(definitions))
    monkeypatch.setenv("BUILDFARM_RELEASES_URL", "http://127.0.0.1:9/api")
    monkeypatch.delenv("BUILDFARM_STORE", raising=False)
    monkeypatch.setattr("buildfarm.farm.select_runner", lambda platform, requested, arch: UnusedRunner())
    # Runtime cells are built on their own platform and arch: make this machine a debian-12 x86_64.
    monkeypatch.setattr("buildfarm.farm.host_platform_id", lambda registry: "debian-12")
    monkeypatch.setattr("buildfarm.farm.host_arch", lambda: "x86_64")
    return root


def files(root: Path) -> list[str]:
    return sorted(str(path.relative_to(root)) for path in root.rglob("*") if path.is_file())


def test_a_dry_run_lists_the_runtime_cells_and_no_runtimes_leaves_them_out(
    store: Path, capsys, monkeypatch
) -> None:
    before = files(store)
    assert main([*RUN, "--store", str(store), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "runtimes: 1 to build, 0 waiting for their Python, 0 current" in out
    assert "svc/2.1.0/debian-12/x86_64  1      build   not built yet" in out
    assert files(store) == before
    assert main([*RUN, "--store", str(store), "--dry-run", "--no-runtimes"]) == 0
    assert "svc/" not in capsys.readouterr().out
    # On another machine (here an arm64 one) the cell is not this run's to build.
    monkeypatch.setattr("buildfarm.farm.host_arch", lambda: "aarch64")
    assert main([*RUN, "--store", str(store), "--dry-run"]) == 0
    assert "runtimes: 0 to build, 0 waiting" in capsys.readouterr().out


def test_a_failed_runtime_build_fails_its_cell_releases_its_claim_and_publishes_nothing(
    store: Path, capsys
) -> None:
    assert main([*RUN, "--store", str(store)]) == 2
    out, err = capsys.readouterr()
    missing = "3.13.5/debian-12/x86_64 build 1: builds/3.13.5/debian-12/x86_64/1/python.tar.gz"
    assert err.splitlines()[-1].startswith("buildfarm run: error: store ") and missing in err
    assert "svc/2.1.0/debian-12/x86_64 build 1: building (here)" in out
    assert "svc/2.1.0/debian-12/x86_64 build 1: failed after" in out and "python.tar.gz" in out
    assert "0 published, 1 failed, 1 skipped" in out
    claim = json.loads((store / "claims/runtimes/svc/2.1.0/debian-12/x86_64.json").read_text())
    assert claim["released"] is True and claim["build"] == 1
    assert "runtimes" not in json.loads((store / "versions.json").read_text())
    assert not (store / "runtimes" / "svc").exists()
    # The failed number is not reused: the next run plans build 2.
    assert main([*RUN, "--store", str(store), "--dry-run"]) == 0
    assert "svc/2.1.0/debian-12/x86_64  2      build   not built yet" in capsys.readouterr().out
