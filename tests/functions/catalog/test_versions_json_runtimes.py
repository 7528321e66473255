"""versions.json's `runtimes` key: merged beside `builds` (installers reading python_versions and
builds see nothing of it), only a higher build replaces a cell, the conditional write keeps
concurrent publishers' cells, and an entry that does not parse is left out when read."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from buildfarm.catalog.versions_json import (
    CatalogCell,
    RuntimeCatalogCell,
    empty_versions,
    merge_cells,
    merge_failures,
    merge_runtime_cells,
    runtime_cells,
    update_runtimes,
    update_versions,
)
from buildfarm.layout import VERSIONS_KEY
from buildfarm.store import LocalStore

NOW = datetime(2026, 11, 22, 10, 0, 0, tzinfo=UTC)
LATER = datetime(2026, 11, 22, 11, 0, 0, tzinfo=UTC)
CELL = ("svc", "2.1.0", "debian-12", "x86_64")


def runtime_entry(build: int, python_build: int = 1, cell: tuple[str, ...] = CELL) -> RuntimeCatalogCell:
    directory = f"runtimes/{'/'.join(cell)}/{build}"  # its keys are its own directory's
    return RuntimeCatalogCell(
        build=build,
        published="2026-11-22T10:00:00Z",
        manifest=f"{directory}/manifest.json",
        python={"version": "3.13.5", "build": python_build},
        requirements={"kind": "requirements.txt", "sha256": "cd" * 32},
        artifacts=[
            {"type": "tarball", "key": f"{directory}/runtime.tar.gz", "sha256": "ab" * 32, "size": 10}
        ],
    )


def python_entry(build: int) -> CatalogCell:
    directory = f"builds/3.13.5/debian-12/x86_64/{build}"
    return CatalogCell(
        build=build,
        published="2026-11-22T10:00:00Z",
        manifest=f"{directory}/manifest.json",
        artifacts=[{"type": "tarball", "key": f"{directory}/p.tar.gz", "sha256": "ef" * 32, "size": 1}],
    )


def test_a_runtime_is_merged_under_its_own_key_with_the_documented_shape() -> None:
    document, accepted = merge_runtime_cells(empty_versions(), {CELL: runtime_entry(1)}, NOW)
    assert accepted == [CELL]
    assert document["python_versions"] == [] and document["builds"] == {}
    entry = document["runtimes"]["svc"]["2.1.0"]["debian-12"]["x86_64"]
    assert set(entry) == {"build", "published", "manifest", "python", "requirements", "artifacts"}
    assert entry["python"] == {"version": "3.13.5", "build": 1}
    assert set(entry["artifacts"][0]) == {"type", "key", "sha256", "size"}
    assert document["updated"] == "2026-11-22T10:00:00Z"


@pytest.mark.parametrize(
    ("existing", "incoming", "kept"),
    [(None, 1, 1), (1, 2, 2), (2, 1, 2), (2, 2, 2)],
    ids=["new", "higher-replaces", "lower-never-rolls-back", "same-is-a-no-op"],
)
def test_only_a_higher_build_replaces_a_runtime_cell(existing, incoming, kept) -> None:
    document = empty_versions()
    if existing:
        document, _ = merge_runtime_cells(document, {CELL: runtime_entry(existing)}, NOW)
    merged, accepted = merge_runtime_cells(document, {CELL: runtime_entry(incoming)}, LATER)
    assert runtime_cells(merged)[CELL].build == kept
    assert accepted == ([CELL] if kept == incoming and incoming != existing else [])
    if not accepted:
        assert merged is document  # nothing to write


def test_python_merges_and_failures_keep_the_runtimes_and_runtime_merges_keep_the_builds() -> None:
    document, _ = merge_cells(empty_versions(), {("3.13.5", "debian-12", "x86_64"): python_entry(1)}, NOW)
    document, _ = merge_runtime_cells(document, {CELL: runtime_entry(1)}, NOW)
    document, _ = merge_cells(document, {("3.13.5", "debian-12", "x86_64"): python_entry(2)}, LATER)
    document, _ = merge_failures(document, {("3.12.11", "debian-12", "x86_64"): (1, "make failed")}, LATER)
    assert runtime_cells(document)[CELL].build == 1
    assert document["builds"]["3.13.5"]["debian-12"]["x86_64"]["build"] == 2
    assert document["python_versions"] == ["3.13.5"]


def test_a_malformed_runtime_entry_is_left_out_when_read() -> None:
    document = {**empty_versions(), "runtimes": {"svc": {"2.1.0": {"debian-12": {"x86_64": {"build": "x"}}}}}}
    assert runtime_cells(document) == {}
    assert runtime_cells({**empty_versions(), "runtimes": ["not", "a", "map"]}) == {}
    assert runtime_cells(empty_versions()) == {}


def test_concurrent_publishers_lose_no_cell(tmp_path: Path) -> None:
    """Python and runtime publishers racing on one store: every cell ends up in versions.json."""
    store = LocalStore(tmp_path)
    store.create()
    cells = [(f"svc{i}", "1.0", "debian-12", "x86_64") for i in range(6)]
    threads = [
        threading.Thread(target=update_runtimes, args=(store, {cell: runtime_entry(1, cell=cell)}, NOW))
        for cell in cells
    ]
    threads.append(
        threading.Thread(
            target=update_versions, args=(store, {("3.13.5", "debian-12", "x86_64"): python_entry(1)}, NOW)
        )
    )
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    document = json.loads((tmp_path / VERSIONS_KEY).read_text())
    assert set(runtime_cells(document)) == set(cells)
    assert document["python_versions"] == ["3.13.5"]
