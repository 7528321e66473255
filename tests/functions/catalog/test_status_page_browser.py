"""The status page in a real browser: Debian's chromium and chromedriver through selenium.

A store is published through the real plan/publish code over three runs (several versions,
platforms, arches and builds; a cell that fails in two runs and is still failing after a third
that does not touch it; a cell that failed, then published). `buildfarm serve`'s server serves
it on loopback at the public base URL it was published for; chromium opens it at 1400 px and at
375 px (a phone): the page renders without horizontal scrolling, every link and every URL in
the install box answers 200, the platform/arch filter hides the build rows and the platforms
overview's rows (one per platform and arch with a build or a failure) that do not match, and
without JavaScript everything shows. The 1400 px screenshot goes to tmp_path, or to
$BUILDFARM_STATUS_PAGE_SCREENSHOT (docs/status-page.png is made that way).
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from loopback import serve_in_background
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from buildfarm.catalog import CatalogArtifact, CatalogCell, empty_versions, merge_cells, render_index
from buildfarm.layout import failure_key
from buildfarm.models import BuildSpec
from buildfarm.plan import plan
from buildfarm.publish import publish
from buildfarm.releases import iso
from buildfarm.serve import make_server, server_url
from buildfarm.store import LocalStore

from ..conftest import NOW, fake_build, write_releases

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
DAY1, DAY2, DAY3 = NOW - timedelta(days=3), NOW - timedelta(days=2), NOW - timedelta(days=1)
STUCK = "3.12.11/rhel-9/aarch64"  # fails on day 1 and day 2, not retried on day 3
RECOVERED = "3.13.5/debian-12/aarch64"  # fails on day 2, publishes on day 3
BOTH_ARCHES = ("x86_64", "aarch64")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[LocalStore, str]]:
    """An empty store directory served by `buildfarm serve`'s server on loopback: (store, base URL)."""
    root = tmp_path / "store"
    root.mkdir()
    server = make_server(root, "127.0.0.1", 0)
    serve_in_background(server)
    yield LocalStore(root), server_url(server).rstrip("/")
    server.shutdown()
    server.server_close()


def build_like_the_builder(store: LocalStore, spec: BuildSpec, kinds: tuple[str, ...]) -> None:
    """fake_build's artifacts, manifest and build.log, as the builder leaves them (the publish
    side adds SHA256SUMS, the SBOM and the provenance)."""
    fake_build(store, spec, kinds=kinds)


def fail_like_the_builder(store: LocalStore, spec: BuildSpec, reason: str) -> None:
    """What a build that fails leaves: its failure record under logs/ (never linked)."""
    store.put_json(
        failure_key(spec.version, spec.platform, spec.arch, spec.build), {"phase": "make", "reason": reason}
    )


def run_day(store, config, request: dict, execution: str, now, failing: dict[str, str]) -> None:
    """Plan, build (cells in `failing` fail with that reason) and publish, as a run does."""
    result = plan(request, store, config, execution, now)
    for item in result.items:
        if item.cell in failing:
            fail_like_the_builder(store, item.spec, failing[item.cell])
        else:
            kinds = ("tarball", "rpm") if item.spec.platform.startswith("rhel") else ("tarball", "deb")
            build_like_the_builder(store, item.spec, kinds)
    publish(result.summary, store, config, now=now, signer=None)


@pytest.fixture
def published(served, config) -> tuple[LocalStore, str]:
    store, base = served
    config = config.model_copy(update={"public_base_url": base})
    write_releases(store, ["3.14.0rc2", "3.13.5", "3.13.4", "3.12.11"], NOW)
    two = {"platforms": ["debian-12", "rhel-9"], "arches": list(BOTH_ARCHES)}
    run_day(
        store,
        config,
        {"versions": ["3.13.4", "3.12.11"], **two},
        "day-1",
        DAY1,
        {STUCK: "cc1: out of memory"},
    )
    failing = {STUCK: "cc1: out of memory (again)", RECOVERED: "test_ssl hung"}
    run_day(store, config, {"versions": ["3.13.5", "3.12.11"], **two}, "day-2", DAY2, failing)
    run_day(store, config, {"versions": ["3.14.0rc2", "3.13.5"], **two}, "day-3", DAY3, {})
    return store, base


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--hide-scrollbars",
    ):
        options.add_argument(flag)
    # chromium's temporary directories (its profile's singleton socket) in pytest's, not /tmp
    env = {**os.environ, "TMPDIR": str(tmp_path_factory.mktemp("chromium"))}
    service = webdriver.ChromeService(executable_path=CHROMEDRIVER, env=env)
    driver = webdriver.Chrome(options=options, service=service)
    yield driver
    driver.quit()


def show(driver: webdriver.Chrome, url: str, width: int, height: int = 900) -> None:
    """Load url in a viewport of width x height CSS pixels (a phone's when narrow)."""
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600},
    )
    driver.get(url)


def no_horizontal_scroll(driver: webdriver.Chrome, width: int) -> None:
    """The page is no wider than the viewport (a phone's browser would widen its layout
    viewport to fit a wider page, so innerWidth is checked too)."""
    scroll_width, inner_width = driver.execute_script(
        "return [document.documentElement.scrollWidth, window.innerWidth]"
    )
    assert scroll_width <= inner_width == width


def fetch_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def rows(driver: webdriver.Chrome) -> list[tuple[str, str, bool]]:
    """Every build row: (platform, arch, hidden by the filter)."""
    return driver.execute_script(
        "return [...document.querySelectorAll('table.builds tbody tr')]"
        ".map(r => [r.dataset.platform, r.dataset.arch, r.closest('[hidden]') !== null])"
    )


def overview(driver: webdriver.Chrome) -> list[tuple[str, str, bool, list[str]]]:
    """Every row of the platforms overview: (platform, arch, hidden by the filter, its cells'
    text: distribution, arch, per series newest to oldest, uv)."""
    return driver.execute_script(
        "return [...document.querySelectorAll('table.overview tbody tr')]"
        ".map(r => [r.dataset.platform, r.dataset.arch, r.closest('[hidden]') !== null,"
        " [...r.querySelectorAll('td')].map(c => c.textContent.trim())])"
    )


def test_the_page_renders_and_every_link_resolves(published, browser):
    store, base = published
    versions = json.loads(store.read("versions.json")[0])
    assert list(versions["failing"]) == ["3.12.11"]  # the stuck cell is on record, the recovered one not

    show(browser, f"{base}/index.html", 1400)
    assert browser.find_element(By.TAG_NAME, "h1").text == "Python Build Farm"
    no_horizontal_scroll(browser, 1400)
    # The newest per series up front, older versions one click away.
    series = [
        element.get_attribute("id") for element in browser.find_elements(By.CSS_SELECTOR, "section.series")
    ]
    assert series == ["python-3.14", "python-3.13", "python-3.12"]
    details = browser.find_element(By.ID, "python-3.13").find_element(By.TAG_NAME, "details")
    assert "3.13.4" in details.find_element(By.TAG_NAME, "summary").text
    assert not details.find_element(By.CSS_SELECTOR, "tbody tr").is_displayed()
    for summary in browser.find_elements(By.CSS_SELECTOR, "details:not([open]) summary"):
        summary.click()
    assert details.find_element(By.CSS_SELECTOR, "tbody tr").is_displayed()
    no_horizontal_scroll(browser, 1400)
    # The stuck cell is failing since day 1 though the latest publish (day 3) did not decide it.
    failing = browser.find_element(By.ID, "failing").text
    assert (
        f"{STUCK} failed #2, failing since {DAY1:%Y-%m-%d} (build 1): make: cc1: out of memory (again)"
        in failing
    )
    assert RECOVERED not in failing

    # Every link on the page, and every URL in the install box, answers 200 over HTTP.
    links = browser.execute_script("return [...document.querySelectorAll('a[href]')].map(a => a.href)")
    commands = " ".join(
        element.get_attribute("textContent")
        for element in browser.find_elements(By.CSS_SELECTOR, "#install pre:not(.generic)")
    )
    urls = {url.split("#")[0] for url in links} | set(re.findall(r"https?://[^\s|]+", commands))
    assert len(links) > 60 and all(url.startswith(base) for url in urls)
    assert {url: fetch_status(url) for url in urls} == dict.fromkeys(urls, 200)
    assert not [url for url in links if "/logs/" in url]  # failure records are not linked, nor served:
    assert fetch_status(f"{base}/{failure_key(*STUCK.split('/'), 1)}") == 404
    anchors = {url.split("#")[1] for url in links if "#" in url}
    assert anchors and all(browser.find_elements(By.ID, anchor) for anchor in anchors)

    screenshot = Path(
        os.environ.get("BUILDFARM_STATUS_PAGE_SCREENSHOT") or store.root.parent / "status-page.png"
    )
    show(browser, f"{base}/index.html", 1400)
    height = browser.execute_script("return document.documentElement.scrollHeight")
    show(browser, f"{base}/index.html", 1400, height)  # the whole page, as it opens
    assert browser.get_screenshot_as_file(str(screenshot))


def test_the_filter_hides_rows_of_other_platforms_and_arches(published, browser):
    _, base = published
    show(browser, f"{base}/index.html", 1400)
    all_rows, all_overview = rows(browser), overview(browser)
    assert {platform for platform, _, _ in all_rows} == {"debian-12", "rhel-9"}
    assert not [row for row in all_rows if row[2]]
    assert not [row for row in all_overview if row[2]]
    # A row per platform and arch with a build or a failure: the enabled platforms without any
    # have none (the filter still lists them).
    assert all({*cells[2:5]} != {"—"} for _, _, _, cells in all_overview)
    built = {(p, a) for p, a, _, _ in all_overview}
    assert built == {(platform, arch) for platform in ("debian-12", "rhel-9") for arch in BOTH_ARCHES}
    Select(browser.find_element(By.ID, "filter-platform")).select_by_visible_text("rhel-9")
    shown = [(p, a) for p, a, hidden in rows(browser) if not hidden]
    assert shown and {p for p, _ in shown} == {"rhel-9"} and len(rows(browser)) == len(all_rows)
    uv_lines = browser.find_elements(By.CSS_SELECTOR, "#uv-commands li")
    assert [line.text.split()[0] for line in uv_lines if line.is_displayed()] == ["rhel-9"]
    Select(browser.find_element(By.ID, "filter-arch")).select_by_visible_text("aarch64")
    shown = [(p, a) for p, a, hidden in rows(browser) if not hidden]
    assert shown and set(shown) == {("rhel-9", "aarch64")}
    assert browser.find_element(By.ID, "failing").is_displayed()  # the stuck cell matches
    # The overview too: rhel-9's aarch64 row alone, which says what the aarch64 builds say (3.12:
    # failing, nothing published; 3.12.11 is x86_64's).
    assert [(p, a, cells[2:5]) for p, a, hidden, cells in overview(browser) if not hidden] == [
        ("rhel-9", "aarch64", ["3.14.0rc2", "3.13.5", "✗"])
    ]
    Select(browser.find_element(By.ID, "filter-platform")).select_by_visible_text("debian-12")
    assert not browser.find_element(By.ID, "failing").is_displayed()
    assert "platform=debian-12&arch=aarch64" in browser.current_url  # a filtered view can be shared
    show(browser, browser.current_url, 1400)  # and is restored from its URL
    assert {(p, a) for p, a, hidden in rows(browser) if not hidden} == {("debian-12", "aarch64")}
    assert {(p, a) for p, a, hidden, _ in overview(browser) if not hidden} == {("debian-12", "aarch64")}
    Select(browser.find_element(By.ID, "filter-platform")).select_by_visible_text("all")
    shown = [(p, a) for p, a, hidden, _ in overview(browser) if not hidden]  # every platform's aarch64
    assert shown == [(p, a) for p, a, _, _ in all_overview if a == "aarch64"] and len(shown) == 2
    Select(browser.find_element(By.ID, "filter-arch")).select_by_visible_text("all")
    assert rows(browser) == all_rows
    assert overview(browser) == all_overview


def test_the_page_fits_a_phone_and_shows_everything_without_javascript(published, browser):
    _, base = published
    show(browser, f"{base}/index.html", 375, 812)
    no_horizontal_scroll(browser, 375)
    for summary in browser.find_elements(By.CSS_SELECTOR, "details summary"):
        summary.click()
    no_horizontal_scroll(browser, 375)
    sha = browser.find_element(By.ID, "python-3.13").find_element(By.CSS_SELECTOR, "code.sha")
    assert re.fullmatch(r"[0-9a-f]{64}", sha.text.replace("\n", ""))  # whole, wrapped on a phone

    browser.execute_cdp_cmd("Emulation.setScriptExecutionDisabled", {"value": True})
    try:
        show(browser, f"{base}/index.html", 375, 812)
        assert not browser.find_element(By.ID, "filter").is_displayed()  # useless without a script
        assert rows(browser) and not [row for row in rows(browser) if row[2]]
        assert len(overview(browser)) == 4 and not [row for row in overview(browser) if row[2]]
        no_horizontal_scroll(browser, 375)
    finally:
        browser.execute_cdp_cmd("Emulation.setScriptExecutionDisabled", {"value": False})


@pytest.fixture
def two_series_page(served, registry) -> str:
    """A page rendered from a real catalog whose series are each built on one platform only
    (3.13 on debian-12, 3.12 on rhel-9), served on loopback: its URL."""
    store, base = served
    cells = {
        (version, platform, "x86_64"): CatalogCell(
            build=1,
            published=iso(DAY1),
            manifest=f"builds/{version}/{platform}/x86_64/1/manifest.json",
            artifacts=[
                CatalogArtifact(type="tarball", key=f"builds/{version}/f.tar.gz", sha256="0" * 64, size=9)
            ],
        )
        for version, platform in (("3.13.5", "debian-12"), ("3.12.11", "rhel-9"))
    }
    document, _ = merge_cells(empty_versions(), cells, DAY1)
    (store.root / "index.html").write_text(render_index(document, registry, ["debian-12", "rhel-9"], NOW))
    return f"{base}/index.html"


def test_the_filter_counts_one_build_in_the_singular(two_series_page, browser):
    show(browser, two_series_page, 1400)
    Select(browser.find_element(By.ID, "filter-platform")).select_by_visible_text("debian-12")
    assert browser.find_element(By.ID, "filter-count").text == "1 build shown"
    Select(browser.find_element(By.ID, "filter-platform")).select_by_visible_text("all")
    Select(browser.find_element(By.ID, "filter-arch")).select_by_visible_text("x86_64")
    assert browser.find_element(By.ID, "filter-count").text == "2 builds shown"


def test_a_link_to_a_part_the_filter_hides_clears_the_filter(two_series_page, browser):
    show(browser, f"{two_series_page}?platform=debian-12", 1400, 400)
    assert not browser.find_element(By.ID, "python-3.12").is_displayed()  # rhel-9's series only
    heading = browser.find_element(By.CSS_SELECTOR, 'table.overview thead a[href="#python-3.12"]')
    assert heading.is_displayed()
    heading.click()
    assert browser.find_element(By.ID, "python-3.12").is_displayed()
    assert Select(browser.find_element(By.ID, "filter-platform")).first_selected_option.text == "all"
    assert browser.current_url == f"{two_series_page}#python-3.12"
    scrolled, top = browser.execute_script(
        "return [window.scrollY, document.getElementById('python-3.12').getBoundingClientRect().top]"
    )
    assert scrolled > 0 and 0 <= top < 400  # scrolled to it
    # A link whose target the filter shows leaves the filter alone.
    show(browser, f"{two_series_page}?platform=debian-12", 1400)
    browser.find_element(By.CSS_SELECTOR, 'table.overview thead a[href="#python-3.13"]').click()
    assert browser.current_url == f"{two_series_page}?platform=debian-12#python-3.13"
    assert not browser.find_element(By.ID, "python-3.12").is_displayed()


def test_a_failing_overview_cell_links_to_the_failure_and_its_reason(published, browser):
    _, base = published
    show(browser, f"{base}/index.html?platform=rhel-9&arch=aarch64", 1400)
    failed = browser.find_element(By.CSS_SELECTOR, "table.overview tbody tr:not([hidden]) a.bad")
    assert failed.text == "✗"
    assert failed.accessible_name == "3.12.11 failed, build 2: make: cc1: out of memory (again)"
    failed.click()
    assert browser.current_url.endswith(f"#failing-{STUCK}")
    target = browser.find_element(By.ID, f"failing-{STUCK}")
    assert target.is_displayed() and "make: cc1: out of memory (again)" in target.text
