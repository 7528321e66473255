"""The status page (index.html) from versions.json: which platforms, series and builds it shows,
what each build row says, failing cells (versions.json's `failing`, kept until a later build
publishes), the install box, and that every value is escaped (the template autoescapes).
test_status_page_browser.py opens it in a real browser."""

from __future__ import annotations

import re
from datetime import timedelta
from html.parser import HTMLParser

import pytest
from html_links import page_links

from buildfarm.catalog import CatalogArtifact, CatalogCell, empty_versions, merge_cells, render_index
from buildfarm.catalog.status_page import Column, Failure, human_size, matrix_cell, matrix_columns
from buildfarm.catalog.versions_json import failing_cells, merge_failures, record_failures, update_versions
from buildfarm.keys_index import KeysIndex
from buildfarm.releases import iso

from ..conftest import FAKE_SHA, NOW, read_json


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
    assert matrix_cell(published, Failure(3, "boom")).state == "failed"
    assert matrix_cell(published, Failure(3, "boom")).superseded_build == 2
    assert matrix_cell(published, Failure(2, "boom")).state == "published"
    assert matrix_cell(None, Failure(1, "boom")).superseded_build is None
    assert matrix_cell(None, None).state == "missing"


def test_the_page_escapes_every_value_from_the_catalog(registry):
    hostile = '<script>alert("x")</script>'
    cells = {("3.13.5", "debian-12", "x86_64"): catalog_cell(f"builds/{hostile}")}
    document, _ = merge_cells(empty_versions(), cells, NOW)
    failed = {("3.13.5", "debian-12", "aarch64"): (1, hostile), ("3.12.8", hostile, "x86_64"): (1, "r")}
    page = render_index(document, registry, ["debian-12"], NOW, failed)
    assert hostile not in page and page.count("<script>") == 1  # the page's own filter script only
    parsed = _Page()
    parsed.feed(page)
    assert parsed.tags.count("script") == 1
    assert f"builds/{hostile}/f.tarball" in parsed.attributes  # an href, intact once unescaped
    assert hostile in parsed.attributes  # the failure reason, as the failed cell's title
    assert hostile in "".join(parsed.text)  # the failed platform's row, the failing list


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
    assert '<a href="builds/a/f.tarball" title="f.tarball">tar.gz</a>' in page
    assert '<span class="size">2.0 KB</span>' in page
    assert (
        '<code>3.13.5/debian-12/x86_64</code> <span class="bad">failed #1</span>: '
        "configure: no C compiler</li>"
    ) in page
    assert "2 published builds of 2 Python versions on 1 platform" in page


def test_an_empty_catalog_says_nothing_is_published(registry):
    page = render_index(empty_versions(), registry, ["debian-12"], NOW)
    assert "<p>Nothing published yet.</p>" in page and "<table" not in page
    assert "Nothing to install yet" in page and "Failing now" not in page


def test_a_build_row_has_its_date_size_sha256_and_links_to_every_file_of_the_build(registry):
    adir = "builds/3.13.5/debian-12/x86_64/1"
    document, _ = merge_cells(empty_versions(), {("3.13.5", "debian-12", "x86_64"): catalog_cell(adir)}, NOW)
    page = render_index(document, registry, ["debian-12"], NOW)
    links = page_links(page)
    files = ["f.tarball", "f.deb", "SHA256SUMS", "manifest.json", "build.log"]
    assert [link for link in links if link.startswith(adir)] == [f"{adir}/{file}" for file in files]
    assert not [link for link in links if link.startswith("logs/")]
    assert f'<code class="sha" title="sha256 of the tar.gz">{FAKE_SHA}</code>' in page
    assert '<time datetime="2026-11-22T09:00:00Z" title="2026-11-22T09:00:00Z">2026-11-22</time>' in page
    assert '<th class="version">3.13.5</th>' in page and ">debian-12</th>" in page


def test_each_cells_newest_build_of_a_series_is_up_front_and_older_ones_behind_details(registry):
    cells = {
        ("3.13.5", "debian-12", "x86_64"): catalog_cell("builds/new-x86"),
        ("3.13.4", "debian-12", "x86_64"): catalog_cell("builds/old-x86"),
        ("3.13.4", "debian-12", "aarch64"): catalog_cell("builds/old-arm"),
        ("3.12.8", "debian-12", "x86_64"): catalog_cell("builds/312"),
    }
    document, _ = merge_cells(empty_versions(), cells, NOW)
    page = render_index(document, registry, ["debian-12"], NOW)
    series_313 = page[page.index('id="python-3.13"') : page.index('id="python-3.12"')]
    up_front, _, behind = series_313.partition("<details>")
    assert "builds/new-x86/" in up_front and "builds/old-arm/" in up_front  # aarch64's newest is 3.13.4
    assert "builds/old-x86/" in behind and "builds/old-x86/" not in up_front
    assert "<summary>Older 3.13 builds: 3.13.4 (1)</summary>" in behind
    assert page.index('id="python-3.13"') < page.index('id="python-3.12"')
    assert "<details>" not in page[page.index('id="python-3.12"') :]


def test_the_install_box_has_the_installer_one_liner_and_uv_per_platform(registry):
    cells = {
        ("3.14.0rc2", "debian-12", "x86_64"): catalog_cell("builds/a"),
        ("3.13.5", "debian-12", "x86_64"): catalog_cell("builds/b"),
        ("3.14.0rc2", "rhel-9", "x86_64"): catalog_cell("builds/c"),
    }
    document, _ = merge_cells(empty_versions(), cells, NOW)
    page = render_index(
        document,
        registry,
        ["debian-12", "rhel-9"],
        NOW,
        public_url=lambda key: f"https://cdn.example.org/py/{key}",
    )
    # As root for the system package, or without root into a directory: both lines, runnable.
    assert "<code>curl -fsSLO https://cdn.example.org/py/install.sh\n" in page
    assert "\nsudo bash install.sh --version 3.13.5\n" in page
    assert "\nbash install.sh --version 3.13.5 --prefix ~/python-3.13.5</code>" in page
    uv = (
        "UV_PYTHON_DOWNLOADS_JSON_URL=https://cdn.example.org/py/download-metadata/{}.json uv python install "
    )
    uv += "{}"
    assert uv.format("debian-12", "3.13.5") in page  # the newest final release
    assert uv.format("rhel-9", "3.14.0rc2") in page  # a pre-release where nothing else is built
    assert "curl -fsSLO BASE_URL/install.sh" in render_index(document, registry, ["debian-12"], NOW)


def test_a_failing_cell_shows_since_when_until_a_later_build_publishes(registry):
    cell = ("3.13.5", "debian-12", "x86_64")
    document, _ = merge_failures(empty_versions(), {cell: (1, "first")}, NOW - timedelta(days=2))
    document, _ = merge_failures(document, {cell: (2, "second")}, NOW)
    page = render_index(document, registry, ["debian-12"], NOW)  # the latest publish did not decide it
    assert (
        '<code>3.13.5/debian-12/x86_64</code> <span class="bad">failed #2</span>, '
        "failing since 2026-11-20 (build 1): second</li>"
    ) in page
    document, _ = merge_cells(document, {cell: catalog_cell("builds/x", build=3)}, NOW)
    page = render_index(document, registry, ["debian-12"], NOW)
    assert "Failing now" not in page and "failed #" not in page


def test_failures_are_recorded_once_keep_their_start_and_clear_on_a_later_publish():
    cell, other = ("3.13.5", "debian-12", "x86_64"), ("3.13.5", "debian-12", "aarch64")
    first, recorded = merge_failures(empty_versions(), {cell: (1, "a")}, NOW)
    assert recorded == [cell] and first["builds"] == {} and first["python_versions"] == []
    assert merge_failures(first, {cell: (1, "a")}, NOW + timedelta(hours=1)) == (first, [])  # decided again
    later, _ = merge_failures(first, {cell: (2, "b"), other: (1, "c")}, NOW + timedelta(days=1))
    entry = failing_cells(later)[cell]
    assert (entry.build, entry.reason, entry.since_build, entry.since) == (2, "b", 1, iso(NOW))
    assert entry.failed == iso(NOW + timedelta(days=1))
    # A publish of an older build leaves the failure; of the failed build or a later one, clears it.
    kept, _ = merge_cells(later, {cell: catalog_cell("builds/x", build=1)}, NOW)
    assert cell in failing_cells(kept)
    cleared, _ = merge_cells(later, {cell: catalog_cell("builds/x", build=2)}, NOW)
    assert set(failing_cells(cleared)) == {other}
    # A failure older than the published build is stale: not recorded.
    assert merge_failures(cleared, {cell: (2, "late")}, NOW)[1] == []


def test_catalogs_without_or_with_broken_failing_entries_still_load():
    old = {"schema_version": 1, "updated": None, "python_versions": [], "builds": {}}
    assert failing_cells(old) == {}
    merged, _ = merge_cells(old, {("3.13.5", "debian-12", "x86_64"): catalog_cell("builds/x")}, NOW)
    assert "failing" not in merged
    broken = {
        **old,
        "failing": {"3.13.5": {"debian-12": {"x86_64": {"build": "one"}, "aarch64": 7}}, "3.12.8": []},
    }
    assert failing_cells(broken) == {}
    assert failing_cells({**old, "failing": ["nonsense"]}) == {}


def test_failures_are_recorded_in_the_stores_versions_json(local_store):
    cell = ("3.13.5", "debian-12", "x86_64")
    record_failures(local_store, {cell: (1, "boom")}, NOW)
    assert read_json(local_store, "versions.json")["failing"]["3.13.5"]["debian-12"]["x86_64"]["build"] == 1
    update_versions(local_store, {cell: catalog_cell("builds/x", build=2)}, NOW)
    document = read_json(local_store, "versions.json")
    assert "failing" not in document and document["builds"]["3.13.5"]["debian-12"]["x86_64"]["build"] == 2


def test_the_overview_has_a_row_per_platform_and_arch_the_filter_can_hide(registry):
    cells = {
        ("3.13.5", "debian-12", "x86_64"): catalog_cell("builds/a"),
        ("3.13.4", "debian-12", "aarch64"): catalog_cell("builds/b"),
    }
    document, _ = merge_cells(empty_versions(), cells, NOW)
    failed = {("3.13.5", "debian-12", "aarch64"): (1, "boom")}
    page = render_index(document, registry, ["debian-12"], NOW, failed)
    overview = page[page.index('<table class="overview">') : page.index("</table>")]
    rows = re.findall(r'<tr data-platform="([^"]*)" data-arch="([^"]*)">(.*?)</tr>', overview, re.S)
    assert [(platform, arch) for platform, arch, _ in rows] == [
        ("debian-12", arch) for arch in registry.platforms["debian-12"].arches
    ]
    by_arch = {arch: row for _, arch, row in rows}
    newest = {arch: re.findall(r'href="#python-3.13">([^<]*)</a>', row) for arch, row in by_arch.items()}
    assert newest["x86_64"] == ["3.13.5"] and newest["aarch64"] == ["3.13.4"]  # each arch its own
    assert "✗" in by_arch["aarch64"] and "✗" not in by_arch["x86_64"]  # aarch64's 3.13.5 failed


def _text(html: str) -> str:
    parsed = _Page()
    parsed.feed(html)
    return " ".join("".join(parsed.text).split())


def two_keys() -> KeysIndex:
    """A signed store's keys/keys.json after one rotation: the current key and an older one."""
    return (
        KeysIndex(current=None, keys=[]).with_current(f"SHA256:{'a' * 64}").with_current(f"SHA256:{'b' * 64}")
    )


def test_every_count_on_the_page_is_singular_for_one(registry):
    one = {("3.13.5", "debian-12", "x86_64"): catalog_cell("builds/a")}
    document, _ = merge_cells(empty_versions(), one, NOW)
    page = _text(render_index(document, registry, ["debian-12"], NOW, keys_index=two_keys()))
    assert "1 published build of 1 Python version on 1 platform ·" in page
    assert f"; older key: SHA256:{'a' * 64} ·" in page
    more = {**one, ("3.12.8", "rhel-9", "x86_64"): catalog_cell("builds/b")}
    document, _ = merge_cells(empty_versions(), more, NOW)
    keys = two_keys().with_current(f"SHA256:{'c' * 64}")
    page = _text(render_index(document, registry, ["debian-12", "rhel-9"], NOW, keys_index=keys))
    assert "2 published builds of 2 Python versions on 2 platforms ·" in page
    assert "; older keys: SHA256:" in page


def test_the_install_box_says_what_install_sh_checks_on_a_signed_and_an_unsigned_store(registry):
    """install.sh checks signatures only with a pinned key (baked in from keys/keys.json); on an
    unsigned store it checks the download's sha256 against versions.json alone."""
    document, _ = merge_cells(
        empty_versions(), {("3.13.5", "debian-12", "x86_64"): catalog_cell("builds/a")}, NOW
    )
    install = re.compile(r'<section class="install".*?</section>', re.S)
    unsigned = _text(install.search(render_index(document, registry, ["debian-12"], NOW)).group())
    checks = "checks the sha256 of what it downloads against versions.json (this store is unsigned: "
    assert checks + "no signatures to check)" in unsigned
    assert "signatures" not in unsigned.replace("no signatures to check", "")
    signed_page = render_index(document, registry, ["debian-12"], NOW, keys_index=two_keys())
    signed = _text(install.search(signed_page).group())
    assert (
        "checks the signatures of versions.json and SHA256SUMS and the sha256 of what it downloads" in signed
    )


def test_a_failing_overview_cell_links_to_its_failure_which_shows_the_reason(registry):
    published = {("3.13.4", "debian-12", "aarch64"): catalog_cell("builds/b")}
    document, _ = merge_cells(empty_versions(), published, NOW)
    failed = {("3.13.5", "debian-12", "aarch64"): (2, "make: cc1: out of memory")}
    page = render_index(document, registry, ["debian-12"], NOW, failed)
    overview = page[page.index('<table class="overview">') : page.index("</table>")]
    links = re.findall(r'<a href="#([^"]*)" class="bad" aria-label="([^"]*)">✗</a>', overview)
    assert links == [("failing-3.13.5/debian-12/aarch64", "3.13.5 failed, build 2: make: cc1: out of memory")]
    target = re.search(r'<li id="failing-3\.13\.5/debian-12/aarch64"[^>]*>(.*?)</li>', page, re.S)
    assert target and _text(target.group(1)) == "3.13.5/debian-12/aarch64 failed #2: make: cc1: out of memory"


def test_the_header_states_its_times_in_utc_as_the_rows_date_with_the_iso_value_kept(registry):
    document, _ = merge_cells(
        empty_versions(),
        {("3.13.5", "debian-12", "x86_64"): catalog_cell("builds/a")},
        NOW - timedelta(minutes=5),
    )
    page = render_index(document, registry, ["debian-12"], NOW)
    header = page[page.index('<p class="meta">') : page.index("</p>", page.index('<p class="meta">'))]
    assert '<time datetime="2026-11-22T09:55:00Z">2026-11-22 09:55 UTC</time>' in header
    assert '<time datetime="2026-11-22T10:00:00Z">2026-11-22 10:00 UTC</time>' in header
    assert "T09:55" not in _text(header) and "T10:00" not in _text(header)
    never = render_index(empty_versions(), registry, ["debian-12"], NOW)
    assert "versions.json updated never ·" in _text(never)
