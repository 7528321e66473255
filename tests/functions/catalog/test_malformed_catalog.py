"""A malformed versions.json is refused where it is read: one line naming the bad entry, a
non-zero exit, and nothing derived from it (install.sh, uv metadata, index.html) written. The
publish paths that merge into it (Python cells, runtime cells) refuse it the same way."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from buildfarm.catalog.derived import public_url_function, regenerate_derived
from buildfarm.catalog.versions_json import (
    CatalogCell,
    RuntimeCatalogCell,
    check_catalog,
    iter_cells,
    merge_cells,
    merge_runtime_cells,
    read_versions,
    update_runtimes,
)
from buildfarm.cli import main
from buildfarm.errors import BuildfarmError
from buildfarm.layout import VERSIONS_KEY
from buildfarm.plan import plan
from buildfarm.publish import publish
from buildfarm.store import LocalStore

from ..conftest import NOW, fake_build, read_json, write_releases

CELL = ("3.13.5", "debian-12", "x86_64")
Edit = Callable[[dict[str, Any]], None]


def _cell(document: dict[str, Any]) -> dict[str, Any]:
    return document["builds"]["3.13.5"]["debian-12"]["x86_64"]


def _set(path: tuple[str, ...], value: Any) -> Edit:
    def edit(document: dict[str, Any]) -> None:
        *parents, last = path
        target = document
        for name in parents:
            target = target[name]
        target[last] = value

    return edit


def _drop_artifact_key(document: dict[str, Any]) -> None:
    del _cell(document)["artifacts"][0]["key"]


ARTIFACT = ("builds", *CELL, "artifacts", 0)
CELL_PATH = "builds/3.13.5/debian-12/x86_64"
RUNTIME_ESCAPING = {
    "build": 1,
    "artifacts": [{"type": "tarball", "key": "/etc/passwd", "sha256": "ab" * 32, "size": 1}],
}

# (id, how the published catalog is broken, what the one-line error must name)
MALFORMED: list[tuple[str, Edit, str]] = [
    ("version-is-a-list", _set(("builds", "3.13.5"), []), "versions.json builds/3.13.5: expected an object"),
    (
        "cell-is-a-string",
        _set(("builds", "3.13.5", "debian-12"), {"x86_64": "x"}),
        "versions.json builds/3.13.5/debian-12/x86_64: expected an object, found a string",
    ),
    (
        "artifact-without-key",
        _drop_artifact_key,
        "versions.json builds/3.13.5/debian-12/x86_64: artifacts/0/key: field required",
    ),
    ("runtime-is-a-list", _set(("runtimes",), {"r": []}), "versions.json runtimes/r: expected an object"),
    (
        "build-is-a-string",
        _set(("builds", "3.13.5", "debian-12", "x86_64", "build"), "1"),
        "versions.json builds/3.13.5/debian-12/x86_64: build: input should be a valid integer, not '1'",
    ),
    ("builds-is-a-list", _set(("builds",), []), "versions.json builds: expected an object, found a list"),
    ("bad-version", _set(("builds", "3.13.x"), {}), "versions.json builds/3.13.x: malformed Python version"),
    (
        "python-versions-not-a-list",
        _set(("python_versions",), 3),
        "versions.json python_versions: expected a list of strings",
    ),
    (
        "size-is-a-string",
        _set(("builds", "3.13.5", "debian-12", "x86_64", "artifacts", 0, "size"), "10"),
        "versions.json builds/3.13.5/debian-12/x86_64: artifacts/0/size: input should be a valid integer",
    ),
    # Keys: a file of the cell's own build directory (uv metadata and install.sh are made of them).
    (
        "artifact-key-escapes",
        _set((*ARTIFACT, "key"), "../../etc/passwd"),
        f"versions.json {CELL_PATH}: artifacts/0/key: "
        "invalid store key '../../etc/passwd' (bad segment '..')",
    ),
    (
        "artifact-key-of-another-build",
        _set((*ARTIFACT, "key"), "builds/3.13.5/debian-12/x86_64/2/python.tar.gz"),
        f"versions.json {CELL_PATH}: artifacts/0/key: 'builds/3.13.5/debian-12/x86_64/2/python.tar.gz' "
        f"is not in the build's directory {CELL_PATH}/1",
    ),
    (
        "manifest-of-another-cell",
        _set(("builds", *CELL, "manifest"), "builds/3.12.1/debian-12/x86_64/1/manifest.json"),
        f"versions.json {CELL_PATH}: manifest: 'builds/3.12.1/debian-12/x86_64/1/manifest.json' is not "
        f"{CELL_PATH}/1/manifest.json",
    ),
    (
        "runtime-key-escapes",
        _set(("runtimes",), {"svc": {"2.1.0": {"debian-12": {"x86_64": RUNTIME_ESCAPING}}}}),
        "versions.json runtimes/svc/2.1.0/debian-12/x86_64: artifacts/0/key: invalid store key '/etc/passwd'",
    ),
]
IDS = [case[0] for case in MALFORMED]


@pytest.fixture
def published(tmp_path: Path, config, session_signer) -> LocalStore:
    """3.13.5 on debian-12/x86_64 published (and signed) by the real publisher, file:// URLs."""
    store = LocalStore(tmp_path / "store")
    write_releases(store, ["3.13.5"])
    result = plan({"versions": ["3.13.5"], "platforms": ["debian-12"]}, store, config, "exec-1", NOW)
    for item in result.items:
        fake_build(store, item.spec)
    publish(result.summary, store, config, now=NOW, signer=session_signer)
    return store


def snapshot(store: LocalStore) -> dict[str, bytes]:
    """Every file in the store, by key, with its bytes."""
    return {
        str(path.relative_to(store.root)): path.read_bytes()
        for path in sorted(store.root.rglob("*"))
        if path.is_file()
    }


def break_catalog(store: LocalStore, edit: Edit) -> None:
    document = read_json(store, VERSIONS_KEY)
    edit(document)
    store.put_json(VERSIONS_KEY, document)


@pytest.mark.parametrize(("edit", "named"), [case[1:] for case in MALFORMED], ids=IDS)
def test_reindex_refuses_a_malformed_catalog_in_one_line_and_writes_nothing(
    published, edit, named, capsys, monkeypatch
) -> None:
    monkeypatch.delenv("BUILDFARM_PUBLIC_BASE_URL", raising=False)
    break_catalog(published, edit)
    before = snapshot(published)
    # A new base URL: every derived file would be rewritten if the catalog were read as it is.
    status = main(["reindex", "--store", str(published.root), "--base-url", "https://cdn.example.org/py"])
    err = capsys.readouterr().err
    assert status == 2  # a store that cannot be used: exit 2, as `run` of it (test_store_failures)
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"buildfarm reindex: error: store {published.root}: {named}"), err
    assert snapshot(published) == before


@pytest.mark.parametrize(
    ("content", "named"),
    [(b"[]", "versions.json is not a JSON object"), (b'{"builds": ', "versions.json is not valid JSON")],
    ids=["not-an-object", "not-json"],
)
def test_reindex_refuses_a_catalog_that_is_no_json_object(published, content, named, capsys) -> None:
    (published.root / VERSIONS_KEY).write_bytes(content)
    before = snapshot(published)
    assert main(["reindex", "--store", str(published.root), "--base-url", "https://cdn.example.org/py"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and named in err, err
    assert snapshot(published) == before


def test_reindex_of_the_well_formed_catalog_writes_every_derived_file(published, capsys) -> None:
    """The control for the test above: the same store and command, unbroken, rewrite them all."""
    before = snapshot(published)
    assert main(["reindex", "--store", str(published.root), "--base-url", "https://cdn.example.org/py"]) == 0
    after = snapshot(published)
    for key in ("install.sh", "index.html", "download-metadata/debian-12.json"):
        assert after[key] != before[key]
        assert b"https://cdn.example.org/py" in after[key]


@pytest.mark.parametrize(("edit", "named"), [case[1:] for case in MALFORMED], ids=IDS)
def test_regenerate_derived_writes_nothing_from_a_malformed_catalog(
    published, registry, edit, named, session_signer
) -> None:
    break_catalog(published, edit)
    before = snapshot(published)
    public_url = public_url_function(published, "https://cdn.example.org/py")
    with pytest.raises(BuildfarmError) as caught:
        regenerate_derived(published, registry, ["debian-12"], public_url, NOW, signer=session_signer)
    assert isinstance(caught.value, ValueError)  # callers report a store's bad document as one
    assert str(caught.value).startswith(named)
    assert snapshot(published) == before


@pytest.mark.parametrize(("edit", "named"), [case[1:] for case in MALFORMED], ids=IDS)
def test_publishing_a_python_cell_into_a_malformed_catalog_is_refused(
    published, config, edit, named, session_signer
) -> None:
    result = plan({"versions": ["3.13.5"], "platforms": ["rhel-9"]}, published, config, "exec-2", NOW)
    assert result.items
    for item in result.items:
        fake_build(published, item.spec, kinds=("tarball", "rpm"))
    break_catalog(published, edit)
    catalog = (published.root / VERSIONS_KEY).read_bytes()
    derived = {key: value for key, value in snapshot(published).items() if not key.startswith("builds/")}
    with pytest.raises(BuildfarmError) as caught:
        publish(result.summary, published, config, now=NOW, signer=session_signer)
    assert str(caught.value).startswith(named)
    assert (published.root / VERSIONS_KEY).read_bytes() == catalog
    assert {k: v for k, v in snapshot(published).items() if k in derived} == derived


def _runtime_entry() -> RuntimeCatalogCell:
    directory = "runtimes/svc/2.1.0/debian-12/x86_64/1"
    return RuntimeCatalogCell(
        build=1,
        published="2026-11-22T10:00:00Z",
        manifest=f"{directory}/manifest.json",
        python={"version": "3.13.5", "build": 1},
        requirements={"kind": "requirements.txt", "sha256": "cd" * 32},
        artifacts=[{"type": "tarball", "key": f"{directory}/r.tar.gz", "sha256": "ab" * 32, "size": 10}],
    )


@pytest.mark.parametrize(("edit", "named"), [case[1:] for case in MALFORMED], ids=IDS)
def test_publishing_a_runtime_into_a_malformed_catalog_is_refused(published, edit, named) -> None:
    break_catalog(published, edit)
    before = snapshot(published)
    cell = ("svc", "2.1.0", "debian-12", "x86_64")
    with pytest.raises(BuildfarmError) as caught:
        update_runtimes(published, {cell: _runtime_entry()}, NOW)
    assert str(caught.value).startswith(named)
    assert snapshot(published) == before


def test_the_merges_refuse_a_malformed_document_rather_than_crash(published) -> None:
    """merge_cells, merge_runtime_cells and iter_cells are also called on documents that were
    not read by read_versions: they name the bad level too."""
    document = read_json(published, VERSIONS_KEY)
    entry = CatalogCell.model_validate(_cell(document))
    for edit, named in [(case[1], case[2]) for case in MALFORMED[:2]]:
        broken = copy.deepcopy(document)
        edit(broken)
        with pytest.raises(BuildfarmError, match=named.removeprefix("versions.json ")):
            merge_cells(broken, {CELL: entry}, NOW)
        with pytest.raises(BuildfarmError, match=named.removeprefix("versions.json ")):
            list(iter_cells(broken))
    with pytest.raises(BuildfarmError, match="runtimes/r: expected an object"):
        runtime = {("r", "1", "p", "a"): _runtime_entry()}
        merge_runtime_cells({**document, "runtimes": {"r": []}}, runtime, NOW)


def test_well_formed_catalogs_old_and_new_are_accepted(published, tmp_path) -> None:
    """The catalog the publisher writes, one with runtimes and failing cells, and the smaller
    ones older tests and tools wrote (no `published`/`manifest`, no python_versions, builds null)."""
    document, _ = read_versions(published)
    assert check_catalog(document) is document
    cell = CELL
    runtime = ("svc", "2.1.0", "debian-12", "x86_64")  # _runtime_entry's directory
    with_more, _ = merge_runtime_cells(document, {runtime: _runtime_entry()}, NOW)
    with_more["failing"] = {"3.13.6": {"debian-12": {"x86_64": {"build": 1, "reason": "x"}}}}
    check_catalog(with_more)
    key = f"{CELL_PATH}/1/k.tar.gz"
    minimal = {"build": 1, "artifacts": [{"type": "tarball", "key": key, "sha256": "ab" * 32, "size": 1}]}
    builds = {"3.13.5": {"debian-12": {"x86_64": minimal}}}
    for old in (
        {"schema_version": 1, "python_versions": ["3.13.5"], "builds": builds},
        {"schema_version": 1, "updated": None, "python_versions": [], "builds": {}},
        {"builds": None},
        {},
    ):
        store = LocalStore(tmp_path / f"old-{len(json.dumps(old))}")
        store.put_json(VERSIONS_KEY, old)
        assert read_versions(store)[0] == old
    assert cell in [found for found, _ in iter_cells(document)]
