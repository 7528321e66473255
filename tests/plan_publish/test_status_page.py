"""The status page (index.html) from versions.json: which columns and rows it shows, what each
cell says, and that every value is escaped (the template autoescapes)."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

from buildfarm.catalog import CatalogArtifact, CatalogCell, empty_versions, merge_cells, render_index
from buildfarm.catalog.status_page import Column, human_size, matrix_cell, matrix_columns

from .conftest import FAKE_SHA, NOW


def catalog_cell(key: str, build: int = 1, kinds: tuple[str, ...] = ("tarball", "deb")) -> CatalogCell:
    return CatalogCell(
        build=build,
        published="2026-11-22T09:00:00Z",
        manifest=f"{key}/manifest.json",
        artifacts=[
            CatalogArtifact(type=kind, key=f"{key}/f.{kind}", sha256=FAKE_SHA, size=2048) for kind in kinds
        ],
    )


class _Page(HTMLParser):
    """Every start tag's attributes and all text, unescaped."""

    def __init__(self) -> None:
        super().__init__()
        self.attributes: list[str] = []
        self.text: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes += [value or "" for _, value in attrs]

    def handle_data(self, data: str) -> None:
        self.text.append(data)


@pytest.mark.parametrize(
    ("size", "shown"),
    [(0, "0 B"), (1023, "1023 B"), (1024, "1.0 KB"), (1536 * 1024, "1.5 MB"), (5 * 1024**4, "5120.0 GB")],
)
def test_sizes_are_human_readable(size, shown):
    assert human_size(size) == shown


def test_columns_are_the_given_platforms_then_any_other_with_a_cell(registry):
    builds = {"3.13.5": {"debian-12": {"riscv64": {}}, "elsewhere-1": {"x86_64": {}}}}
    failed = {("3.12.8", "failing-2", "aarch64"): (1, "boom")}
    columns = matrix_columns(builds, registry, ["debian-12"], failed)
    assert columns == [
        *(Column("debian-12", arch) for arch in registry.platforms["debian-12"].arches),
        Column("debian-12", "riscv64"),
        Column("elsewhere-1", "x86_64"),
        Column("failing-2", "aarch64"),
    ]


def test_a_failure_shows_only_when_newer_than_the_published_build():
    published = {"build": 2, "artifacts": [], "manifest": "m"}
    assert matrix_cell(published, (3, "boom")).state == "failed"
    assert matrix_cell(published, (3, "boom")).superseded_build == 2
    assert matrix_cell(published, (2, "boom")).state == "published"
    assert matrix_cell(None, (1, "boom")).superseded_build is None
    assert matrix_cell(None, None).state == "missing"


def test_the_page_escapes_every_value_from_the_catalog(registry):
    hostile = '<script>alert("x")</script>'
    cells = {("3.13.5", "debian-12", "x86_64"): catalog_cell(f"builds/{hostile}")}
    document, _ = merge_cells(empty_versions(), cells, NOW)
    failed = {("3.13.5", "debian-12", "aarch64"): (1, hostile), ("3.12.8", hostile, "x86_64"): (1, "r")}
    page = render_index(document, registry, ["debian-12"], NOW, failed)
    assert "<script>" not in page
    parsed = _Page()
    parsed.feed(page)
    assert "script" not in parsed.tags
    assert f"builds/{hostile}/f.tarball" in parsed.attributes  # an href, intact once unescaped
    assert hostile in parsed.attributes  # the failure reason, as the failed cell's title
    assert hostile in "".join(parsed.text)  # the failed platform's column, the failures list


def test_rows_are_newest_first_and_failures_are_listed(registry):
    cells = {
        ("3.12.8", "debian-12", "x86_64"): catalog_cell("builds/a"),
        ("3.14.0rc2", "debian-12", "x86_64"): catalog_cell("builds/b", kinds=("deb",)),
    }
    document, _ = merge_cells(empty_versions(), cells, NOW)
    failed = {("3.13.5", "debian-12", "x86_64"): (1, "configure: no C compiler")}
    page = render_index(document, registry, ["debian-12"], NOW, failed)
    newest_first = ("3.14.0rc2", "3.13.5", "3.12.8")
    rows = [page.index(f'<th class="version">{version}</th>') for version in newest_first]
    assert rows == sorted(rows)
    assert '<a href="builds/a/f.tarball">#1</a> <span class="size">2.0 KB</span>' in page
    assert "<code>3.13.5/debian-12/x86_64</code> build 1: configure: no C compiler</li>" in page
    assert "2 published builds of 2 Python versions on 1 platforms" in page


def test_an_empty_catalog_says_nothing_is_published(registry):
    page = render_index(empty_versions(), registry, ["debian-12"], NOW)
    assert "<p>Nothing published yet.</p>" in page and "<table" not in page
    assert "uv download metadata: none yet</div>" in page and "Failed in the latest publish" not in page
