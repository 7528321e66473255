"""The status page's runtimes table (versions.json's `runtimes`: name, version, platform/arch,
the Python it uses, build, links) and its signing line (keys/keys.json's fingerprints, current
first, or "unsigned")."""

from __future__ import annotations

import re

import pytest

from buildfarm.catalog import empty_versions, render_index
from buildfarm.catalog.status_page import runtime_rows, signing_keys, stored_keys_index
from buildfarm.catalog.versions_json import RuntimeCatalogCell, merge_runtime_cells
from buildfarm.keys_index import KeysIndex
from buildfarm.store import LocalStore

from ..conftest import FAKE_SHA, NOW

CURRENT, OLD = "SHA256:" + "ab" * 32, "SHA256:" + "cd" * 32
KEYS = {
    "schema_version": 1,
    "current": CURRENT,
    "keys": [{"fingerprint": OLD, "file": "keys/x.pub"}, {"fingerprint": CURRENT, "file": "keys/y.pub"}],
}


def runtime(name: str, version: str, platform: str, arch: str, build: int = 1) -> tuple:
    directory = f"runtimes/{name}/{version}/{platform}/{arch}/{build}"
    entry = RuntimeCatalogCell(
        build=build,
        published="2026-11-22T09:00:00Z",
        manifest=f"{directory}/manifest.json",
        python={"version": "3.13.5", "build": 2},
        requirements={"kind": "requirements.txt", "sha256": FAKE_SHA},
        artifacts=[
            {"type": "tarball", "key": f"{directory}/r.tar.gz", "sha256": FAKE_SHA, "size": 3 * 1024**2},
            {"type": "deb", "key": f"{directory}/r.deb", "sha256": "0" * 64, "size": 2048},
        ],
    )
    return (name, version, platform, arch), entry


def catalog(*cells: tuple) -> dict:
    document, _ = merge_runtime_cells(empty_versions(), dict(cells), NOW)
    return document


def test_runtime_rows_by_name_newest_version_first_then_platform_and_arch() -> None:
    document = catalog(
        runtime("svc", "1.9.0", "debian-12", "x86_64"),
        runtime("svc", "1.10.0", "ubuntu-2404", "x86_64"),
        runtime("svc", "1.10.0", "debian-12", "aarch64"),
        runtime("api", "2.0.0", "debian-12", "x86_64", build=3),
    )
    rows = runtime_rows(document)
    assert [(r.name, r.version, r.platform, r.arch) for r in rows] == [
        ("api", "2.0.0", "debian-12", "x86_64"),
        ("svc", "1.10.0", "debian-12", "aarch64"),
        ("svc", "1.10.0", "ubuntu-2404", "x86_64"),
        ("svc", "1.9.0", "debian-12", "x86_64"),
    ]
    first = rows[0]
    assert (
        first.python == "3.13.5 build 2" and first.published.build == 3 and first.published.size == "3.0 MB"
    )
    assert [link.label for link in first.published.links] == ["tar.gz", ".deb", "SHA256SUMS", "manifest"]


def test_the_page_has_a_runtimes_table_with_the_python_and_links(registry) -> None:
    page = render_index(catalog(runtime("svc", "1.0.0", "debian-12", "x86_64")), registry, ["debian-12"], NOW)
    table = page[page.index('<section class="runtimes"') :]
    assert "svc 1.0.0" in table and "3.13.5 build 2" in table and "#1" in table
    assert 'data-platform="debian-12" data-arch="x86_64"' in table
    assert 'href="runtimes/svc/1.0.0/debian-12/x86_64/1/SHA256SUMS"' in table
    assert "build.log" not in table
    assert '<section class="runtimes"' not in render_index(empty_versions(), registry, ["debian-12"], NOW)


@pytest.mark.parametrize(
    ("keys_index", "shown"),
    [
        (KEYS, [(CURRENT, True), (OLD, False)]),
        (None, []),
        ({"current": None, "keys": [{"fingerprint": OLD}]}, [(OLD, False)]),
    ],
    ids=["current-first", "no-index", "no-current"],
)
def test_signing_keys(keys_index, shown) -> None:
    index = None if keys_index is None else KeysIndex.model_validate(keys_index)
    assert [(key.fingerprint, key.current) for key in signing_keys(index)] == shown


def test_the_page_shows_the_signing_key_near_the_top_or_says_unsigned(registry) -> None:
    keys_index = KeysIndex.model_validate(KEYS)
    signed = render_index(empty_versions(), registry, ["debian-12"], NOW, keys_index=keys_index)
    line = re.search(r'<p class="meta" id="signing">(.*?)</p>', signed, re.S).group(1)
    assert line.index(CURRENT) < line.index("older key:") < line.index(OLD)
    assert f'href="keys/{"ab" * 32}.pub"' in line and 'href="versions.json.sig"' in line
    assert signed.index('id="signing"') < signed.index('id="install"')
    unsigned = render_index(empty_versions(), registry, ["debian-12"], NOW)
    assert re.search(r'id="signing">Unsigned', unsigned)


def test_the_keys_index_is_read_from_the_store(tmp_path) -> None:
    store = LocalStore(tmp_path)
    store.create()
    assert signing_keys(stored_keys_index(store)) == []  # no keys.json: unsigned
    store.put("keys/keys.json", b"not json")
    assert stored_keys_index(store) is None
    for malformed in ({"keys": "nope"}, {"current": None, "keys": [{"fingerprint": "SHA256:xyz"}]}):
        store.put_json("keys/keys.json", malformed)
        assert stored_keys_index(store) is None  # the page then says unsigned
    store.put_json("keys/keys.json", KEYS)
    assert stored_keys_index(store) == KeysIndex.model_validate(KEYS)
