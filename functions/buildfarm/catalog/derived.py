"""Regenerating what is derived from versions.json (uv metadata, the status page, install.sh),
as Finalize does once per run."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

from buildfarm.catalog.install_script import publish_installer
from buildfarm.catalog.status_page import FailedCells, render_index
from buildfarm.catalog.uv_metadata import uv_download_metadata
from buildfarm.catalog.versions_json import published_platforms, read_versions, versions_etag
from buildfarm.layout import INDEX_KEY, INSTALLER_KEY, download_metadata_key
from buildfarm.platforms import Registry
from buildfarm.store import Store


def public_url_function(store: Store, public_base_url: str | None) -> Callable[[str], str]:
    """key -> absolute URL: <public base>/<key>, else the store's own URL (file:// or S3 https).

    uv rejects relative URLs ("relative URL without a base"), so they are always absolute.
    """
    if public_base_url:
        base = public_base_url.rstrip("/")
        return lambda key: f"{base}/{key}"
    return store.default_public_url


def regenerate_derived(
    store: Store,
    registry: Registry,
    platforms: Iterable[str],
    public_url: Callable[[str], str],
    now: datetime,
    failed: FailedCells | None = None,
    max_rounds: int = 10,
) -> list[str]:
    """Rewrite download-metadata/<platform>.json and index.html from versions.json (and put
    install.sh at the root if it is missing or outdated).

    After writing, check that versions.json did not change meanwhile; if it did, render
    again. Every publisher does this after its own write, so the last derived files written
    always reflect the newest versions.json. Returns the keys written.
    """
    platforms = list(platforms)
    written: list[str] = []
    if publish_installer(store, public_url):
        written.append(INSTALLER_KEY)
    for _ in range(max_rounds):
        document, etag = read_versions(store)
        for platform in sorted(published_platforms(document)):
            key = download_metadata_key(platform)
            store.put_json(key, uv_download_metadata(document, platform, public_url))
            written.append(key)
        store.put(
            INDEX_KEY,
            render_index(document, registry, platforms, now, failed).encode(),
            content_type="text/html; charset=utf-8",
        )
        written.append(INDEX_KEY)
        if versions_etag(store) == etag:
            break
    return written
