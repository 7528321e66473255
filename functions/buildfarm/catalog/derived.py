"""Regenerating what is derived from versions.json (uv metadata, the status page, install.sh),
as Finalize does once per run, and as `buildfarm reindex` does for a store that moved or is
served at a new URL.

The derived files carry absolute URLs (uv rejects relative ones), so they are only as good as
the base URL they were written for. install.sh records it, and store_public_url decides it:
the configured base (--base-url, BUILDFARM_PUBLIC_BASE_URL), else the http(s) base the store
was last published for (a `reindex --base-url` sticks: a later `run` that names none keeps it),
else the store's own URL (file://, which follows the directory when it moves). A publish that
published nothing rewrites everything when install.sh was written for another base
(refresh_if_outdated): a moved store is repaired by the next `run`, at the cost of one read.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from buildfarm.catalog.install_script import (
    SHELL_INERT_URL,
    embedded_base_url,
    embedded_fingerprints,
    installer_base,
    publish_installer,
    read_installer,
    render_installer,
)
from buildfarm.catalog.status_page import FailedCells, render_index, stored_keys_index
from buildfarm.catalog.uv_metadata import uv_download_metadata
from buildfarm.catalog.versions_json import (
    merge_cells,
    published_platforms,
    read_versions,
    versions_etag,
)
from buildfarm.errors import UsageError
from buildfarm.layout import INDEX_KEY, INSTALLER_KEY, VERSIONS_KEY, download_metadata_key
from buildfarm.platforms import Registry
from buildfarm.store import Store, StoreConflict, StoreNotFound

if TYPE_CHECKING:
    from buildfarm.attest.signing import Signer

log = logging.getLogger(__name__)

HOW_TO_SET_BASE = (
    "set BUILDFARM_PUBLIC_BASE_URL (or run `buildfarm reindex --base-url URL`) to the URL the "
    "store is served at"
)


def base_url_problem(text: str) -> str | None:
    """What is wrong with a public base URL, or None: http(s)://HOST[:PORT][/PATH] or
    file:///PATH, without query or fragment, of characters install.sh can carry."""
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as error:
        return str(error)
    if parts.scheme not in ("http", "https", "file"):
        return "not an http://, https:// or file:// URL"
    if "@" in parts.netloc:
        return "a base URL has no user info (an '@' before the host)"
    if parts.scheme != "file" and not parts.hostname:
        return "no host"
    if parts.query or parts.fragment or "?" in text or "#" in text:
        return "a base URL has no query or fragment"
    if not SHELL_INERT_URL.fullmatch(text.rstrip("/")):
        return "only letters, digits and ._~%+/:@=-[] are allowed"
    return None


def check_base_url(text: str, name: str = "--base-url") -> str:
    """A public base URL (base_url_problem()), returned without a trailing '/'; UsageError
    naming `name` and the value otherwise."""
    if problem := base_url_problem(text):
        raise UsageError(f"{name} {text!r}: {problem}")
    return text.rstrip("/")


def public_url_function(store: Store, public_base_url: str | None) -> Callable[[str], str]:
    """key -> absolute URL: <public base>/<key>, else the store's own URL (file:// or S3 https).

    uv rejects relative URLs ("relative URL without a base"), so they are always absolute.
    """
    if public_base_url:
        base = public_base_url.rstrip("/")
        return lambda key: f"{base}/{key}"
    return store.default_public_url


def _sticky_base(installer: bytes | None) -> str | None:
    """The http(s) base URL an install.sh was published for; None for none or file://."""
    base = embedded_base_url(installer) if installer else None
    return base if base and not base.startswith("file:") else None


def store_public_url(store: Store, configured: str | None) -> Callable[[str], str]:
    """The URL function a publish writes with: the configured base URL, else the http(s) base
    the store's install.sh was published for, else the store's own URL."""
    return public_url_function(store, configured or _sticky_base(read_installer(store)))


@functools.cache
def warn_local_base(base: str) -> None:
    """Say once per process (and base) that the published URLs only work on this machine."""
    log.warning(
        "buildfarm: warning: install.sh and the uv metadata point at %s, which only this machine "
        "can read: %s",
        base,
        HOW_TO_SET_BASE,
    )


def regenerate_derived(
    store: Store,
    registry: Registry,
    platforms: Iterable[str],
    public_url: Callable[[str], str],
    now: datetime,
    failed: FailedCells | None = None,
    max_rounds: int = 10,
    *,
    signer: Signer | None = None,
) -> list[str]:
    """Rewrite download-metadata/<platform>.json and index.html from versions.json (and put
    install.sh at the root if it is missing or outdated).

    After writing, check that versions.json did not change meanwhile; if it did, render
    again, at most max_rounds times (then a warning says so). Every publisher does this after
    its own write, so the last derived files written always reflect the newest versions.json:
    whoever changed it during the last round writes them again. Returns the keys written, each
    once, in the order first written.

    versions.json is read (and checked: read_versions) first, so a malformed catalog stops with
    its CatalogError before anything is written. With a signer, then its public key is listed
    under keys/ (the status page and install.sh show the keys) and versions.json.sig is signed
    again unless it verifies (two publishers' writes can cross).
    """
    document, etag = read_versions(store)
    base = installer_base(public_url)
    if base.startswith("file:"):
        warn_local_base(base)
    platforms = list(platforms)
    written: list[str] = []
    if signer is not None:
        from buildfarm.attest.store_keys import ensure_catalog_signed  # cryptography, lazily

        written += ensure_catalog_signed(store, signer)
    if publish_installer(store, public_url):
        written.append(INSTALLER_KEY)
    keys_index = stored_keys_index(store)
    for round_number in range(max_rounds):
        if round_number:  # versions.json changed while the last round wrote
            document, etag = read_versions(store)
        for platform in sorted(published_platforms(document)):
            key = download_metadata_key(platform)
            store.put_json(key, uv_download_metadata(document, platform, public_url))
            written.append(key)
        page = render_index(document, registry, platforms, now, failed, public_url, keys_index=keys_index)
        store.put(INDEX_KEY, page.encode(), content_type="text/html; charset=utf-8")
        written.append(INDEX_KEY)
        if versions_etag(store) == etag:
            return unique(written)
    # Not an error: the publisher that keeps changing versions.json regenerates after each of
    # its writes (failing here would fail a Finalize beside a busy publisher, for nothing).
    log.warning(
        "buildfarm: warning: %s changed while its derived files were written, %d times in a row: "
        "stopped; the publisher that changed it writes them again",
        store.url(VERSIONS_KEY),
        max_rounds,
    )
    return unique(written)


def unique(keys: Iterable[str]) -> list[str]:
    """Each key once, where it first comes: what a publish wrote, however many rounds it took."""
    return list(dict.fromkeys(keys))


def refresh_if_outdated(
    store: Store,
    registry: Registry,
    platforms: Iterable[str],
    configured_base: str | None,
    now: datetime,
) -> list[str]:
    """For a publish that published nothing: rewrite every derived file if install.sh was
    written for another base URL (store_public_url: the store moved, or its configured URL
    changed) or by another version of the script. One read when they are current. Returns
    the keys written."""
    installer = read_installer(store)
    public_url = public_url_function(store, configured_base or _sticky_base(installer))
    # The keys it bakes are its own: a new key comes only with a signing publish, which
    # rewrites install.sh itself (so this stays one read).
    baked = embedded_fingerprints(installer) if installer else []
    if installer == render_installer(installer_base(public_url), baked) or versions_etag(store) is None:
        return []
    log.info("derived files are outdated (store moved or base URL changed): rewriting them")
    return regenerate_derived(store, registry, platforms, public_url, now)


def reindex(
    store: Store,
    registry: Registry,
    platforms: Iterable[str],
    public_url: Callable[[str], str],
    now: datetime,
    *,
    signer: Signer | None,
) -> list[str]:
    """Regenerate everything derived, for public_url, without building or publishing a cell:
    versions.json's derived view (python_versions, builds sorted newest first) if it is off, then
    the uv metadata, index.html and install.sh. StoreNotFound if nothing is published.
    CatalogError, before anything is written, if the store lacks a file versions.json lists
    (attest.listed_files, by listing keys): a reindex re-signs the catalog and points
    installers at its files again, so it does not vouch for one with a hole in it.
    Signs with signer (the caller's signer_for(config)); without one, a rewritten versions.json
    leaves its signature stale until the next signed publish (said so). Returns the keys
    written, each once, in the order first written."""
    document, etag = read_versions(store)
    if etag is None:
        raise StoreNotFound(f"{store.url(VERSIONS_KEY)} not found: nothing is published in this store")
    from buildfarm.attest.listed_files import require_listed_files  # cryptography, lazily

    require_listed_files(store, document)
    written: list[str] = []
    normalized, _ = merge_cells(document, {}, now)
    if json.dumps(normalized) != json.dumps(document):  # key order too: builds are sorted
        try:
            store.put_json(VERSIONS_KEY, normalized, if_match=etag)
            written.append(VERSIONS_KEY)
            if signer is None:
                log.warning("versions.json rewritten without a signing key: its signature is stale")
        except StoreConflict:
            pass  # a publisher wrote it meanwhile: every merge writes the normalized view
    return unique(written + regenerate_derived(store, registry, platforms, public_url, now, signer=signer))
