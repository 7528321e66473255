"""The status page with runtimes and a signing key, in a real browser (as
test_status_page_browser.py, whose fixtures it reuses): a signed store, Python cells published by
the real plan/publish code, runtimes published by publish_runtime. At 1400 px and on a phone the
page does not scroll sideways, the signing line names the key, every link answers 200 (the
runtime's packages, SHA256SUMS, manifest, the public key, versions.json.sig), and the filter
hides the runtimes of other platforms."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from buildfarm.attest.signing import KeyFileSigner, init_key
from buildfarm.catalog import render_index
from buildfarm.catalog.derived import store_public_url
from buildfarm.catalog.status_page import stored_keys_index
from buildfarm.catalog.versions_json import read_versions
from buildfarm.layout import INDEX_KEY
from buildfarm.runtimes.keys import runtime_artifact_dir
from buildfarm.runtimes.publish import publish_runtime
from buildfarm.store import LocalStore

from ..conftest import NOW, write_releases
from .test_status_page_browser import browser, fetch_status, no_horizontal_scroll, run_day, served, show

__all__ = ["browser", "served"]  # fixtures
RUNTIMES = [("fastapi-demo", "1.0.0", "debian-12", "x86_64"), ("fastapi-demo", "1.0.0", "rhel-9", "aarch64")]


def put_runtime_build(store: LocalStore, cell: tuple[str, str, str, str]) -> None:
    """A runtime build as runtimes.package leaves it: its packages, then manifest.json."""
    name, version, platform, arch = cell
    directory = runtime_artifact_dir(*cell, 1)
    kind = "rpm" if platform.startswith("rhel") else "deb"
    files = {f"runtime-{name}-{version}-{platform}-{arch}.tar.gz": "tarball", f"runtime.{kind}": kind}
    artifacts = []
    for file, type_ in files.items():
        data = f"{file} of {platform}".encode()
        store.put(f"{directory}/{file}", data)
        artifacts.append(
            {"type": type_, "file": file, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
        )
    store.put_json(f"{directory}/manifest.json", {
        "runtime": {"name": name, "version": version}, "platform": platform, "arch": arch, "build": 1,
        "execution_id": "day-1",
        "python": {"version": "3.13.5", "build": 1},
        "requirements": {"kind": "requirements.txt", "sha256": "cd" * 32},
        "artifacts": artifacts,
    })  # fmt: skip


@pytest.fixture
def signed(served, config, registry, tmp_path: Path) -> tuple[LocalStore, str]:
    store, base = served
    init_key(tmp_path / "farm.pem")
    config = config.model_copy(update={"public_base_url": base, "signing_key": str(tmp_path / "farm.pem")})
    write_releases(store, ["3.13.5"], NOW)
    both = {"platforms": ["debian-12", "rhel-9"], "arches": ["x86_64", "aarch64"]}
    run_day(store, config, {"versions": ["3.13.5"], **both}, "day-1", NOW - timedelta(days=1), {})
    signer = KeyFileSigner(tmp_path / "farm.pem")
    for cell in RUNTIMES:
        put_runtime_build(store, cell)
        assert publish_runtime(store, cell, 1, "day-1", NOW, signer=signer).status == "published"
    page = render_index(
        read_versions(store)[0], registry, both["platforms"], NOW, None,
        store_public_url(store, base), keys_index=stored_keys_index(store),
    )  # fmt: skip
    store.put(INDEX_KEY, page.encode(), content_type="text/html; charset=utf-8")
    return store, base


def test_runtimes_and_the_signing_key_render_and_every_link_resolves(signed, browser) -> None:
    _, base = signed
    for width in (1400, 375):
        show(browser, f"{base}/index.html", width)
        no_horizontal_scroll(browser, width)
    show(browser, f"{base}/index.html", 1400)
    signing = browser.find_element(By.ID, "signing").text
    assert signing.startswith("Signed with SHA256:") and len(signing.split()[2]) == 71
    table = browser.find_element(By.ID, "runtimes")
    assert [
        row.get_attribute("data-platform") for row in table.find_elements(By.CSS_SELECTOR, "tbody tr")
    ] == [
        "debian-12",
        "rhel-9",
    ]
    assert "3.13.5 build 1" in table.text and "fastapi-demo 1.0.0" in table.text
    links = browser.execute_script("return [...document.querySelectorAll('a[href]')].map(a => a.href)")
    runtime_links = [url for url in links if "/runtimes/" in url]
    # Two runtime builds, each: its packages, SHA256SUMS and its .sig (recorded: signed), the manifest.
    assert len(runtime_links) == 10 and any(url.endswith(".pub") for url in links)
    urls = {url.split("#")[0] for url in links}
    assert {url: fetch_status(url) for url in urls} == dict.fromkeys(urls, 200)

    Select(browser.find_element(By.ID, "filter-platform")).select_by_visible_text("rhel-9")
    Select(browser.find_element(By.ID, "filter-arch")).select_by_visible_text("x86_64")
    assert not browser.find_element(By.ID, "runtimes").is_displayed()
    Select(browser.find_element(By.ID, "filter-arch")).select_by_visible_text("aarch64")
    assert browser.find_element(By.ID, "runtimes").is_displayed()
