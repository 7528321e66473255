"""install.sh at the store's root: buildfarm/installer/install.sh with the store's public URL
baked in as its default, and the fingerprints of the store's signing keys (keys/keys.json), so
that it checks signatures without a --pubkey. Served from the same place as what it checks, the
baked key does not stop whoever can rewrite install.sh, but it does stop a swap of artifacts,
SHA256SUMS or versions.json alone, and it is what a user pins (`--pubkey SHA256:<hex>`).

Each platform's runtime library packages (the registry's runtime_dependencies) are baked in
too: a --prefix install that cannot import ssl, sqlite3, ... names the command that installs them.

The baked-in URL doubles as the record of the base URL the derived files were last written
for: a publish with nothing new compares it (one read) to decide whether the store moved.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from importlib import resources

from buildfarm.digests import SHA256_HEX
from buildfarm.keys_index import read_keys_index
from buildfarm.layout import INSTALLER_KEY
from buildfarm.platforms import Registry, load_registry
from buildfarm.store import Store, StoreConflict, StoreNotFound

log = logging.getLogger(__name__)

INSTALLER_PLACEHOLDER = "@BASE_URL@"
FINGERPRINTS_PLACEHOLDER = "@KEY_FINGERPRINTS@"
RUNTIME_PLACEHOLDER = "@RUNTIME_PACKAGES@"
# Package names are baked into a double-quoted shell string: inert characters only (platform ids
# too: the registry holds them to platforms.PLATFORM_ID).
_PACKAGE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+_-]*")  # fullmatch
KEY_FINGERPRINT = re.compile(f"SHA256:{SHA256_HEX}", re.ASCII)  # fullmatch; inert in a shell string
_FINGERPRINTS_LINE = re.compile(r'^BAKED_FINGERPRINTS="([^"\n]*)"$', re.MULTILINE)
# The base URL is baked into a shell script: only characters that are inert in a
# double-quoted bash string are accepted, and no user info (an '@' before the host: install.sh
# refuses it, as http://localhost:x@example.org could pass for this machine).
SHELL_INERT_URL = re.compile(  # fullmatch: no newline
    r"(https?|file)://[][A-Za-z0-9._~%+:=-]*(/[][A-Za-z0-9._~%+/:@=-]*)?"
)
_DEFAULT_LINE = re.compile(r'^DEFAULT_BASE_URL="([^"\n]*)"$', re.MULTILINE)
INSTALLER_TYPE = "text/x-shellscript; charset=utf-8"
PIN_ROUNDS = 5


def store_fingerprints(store: Store) -> list[str]:
    """The fingerprints ("SHA256:<hex>") of the store's signing keys in keys/keys.json, the
    current key first, then the others (rotated-out keys still verify older builds); [] for
    an unsigned store. StoreError naming the file if it is not a keys list."""
    return read_keys_index(store)[0].fingerprints()


def runtime_packages(registry: Registry) -> str:
    """Each platform's runtime_dependencies as install.sh reads them:
    "<platform>=<package>,<package>,... ..."; ValueError for a name a shell could act on."""
    entries = []
    for platform in registry.platforms.values():
        packages = list(platform.runtime_dependencies)
        for name in packages:
            if not _PACKAGE_NAME.fullmatch(name):
                raise ValueError(f"not a package name install.sh can carry: {name!r}")
        entries.append(f"{platform.id}={','.join(packages)}")
    return " ".join(entries)


def render_installer(
    base_url: str, fingerprints: Sequence[str] = (), registry: Registry | None = None
) -> bytes:
    """install.sh with its default store URL set to base_url (left unset, so the script asks
    for --base-url, if base_url has characters a shell could act on, or user info), the
    signing keys it checks by default set to fingerprints (none: it checks signatures only
    with --pubkey), and each platform's runtime packages from registry (default: the
    platform registry)."""
    script = (resources.files("buildfarm") / "installer" / "install.sh").read_text()
    script = script.replace(
        f'RUNTIME_PACKAGES="{RUNTIME_PLACEHOLDER}"',
        f'RUNTIME_PACKAGES="{runtime_packages(registry or load_registry())}"',
        1,
    )
    for name in fingerprints:
        if not KEY_FINGERPRINT.fullmatch(name):
            raise ValueError(f"not a key fingerprint: {name!r}")
    script = script.replace(
        f'BAKED_FINGERPRINTS="{FINGERPRINTS_PLACEHOLDER}"',
        f'BAKED_FINGERPRINTS="{" ".join(fingerprints)}"',
        1,
    )
    base_url = base_url.rstrip("/")
    if SHELL_INERT_URL.fullmatch(base_url):
        script = script.replace(
            f'DEFAULT_BASE_URL="{INSTALLER_PLACEHOLDER}"', f'DEFAULT_BASE_URL="{base_url}"', 1
        )
    else:
        log.warning("not baking base URL %r into install.sh: unexpected characters or user info", base_url)
    return script.encode()


def embedded_base_url(script: bytes) -> str | None:
    """The base URL an install.sh was published with; None if it has none baked in."""
    match = _DEFAULT_LINE.search(script.decode(errors="replace"))
    if match is None or match.group(1) == INSTALLER_PLACEHOLDER:
        return None
    return match.group(1)


def embedded_fingerprints(script: bytes) -> list[str]:
    """The key fingerprints an install.sh checks signatures with by default."""
    match = _FINGERPRINTS_LINE.search(script.decode(errors="replace"))
    if match is None or match.group(1) == FINGERPRINTS_PLACEHOLDER:
        return []
    return match.group(1).split()


def installer_base(public_url: Callable[[str], str]) -> str:
    """The base URL (no trailing '/') that public_url puts in front of every key."""
    return public_url(INSTALLER_KEY).removesuffix(INSTALLER_KEY).rstrip("/")


def read_installer(store: Store) -> bytes | None:
    try:
        return store.read(INSTALLER_KEY)[0]
    except StoreNotFound:
        return None


def wanted_installer(store: Store, public_url: Callable[[str], str]) -> bytes:
    """install.sh as this store should serve it: for its public URL and its signing keys."""
    return render_installer(installer_base(public_url), store_fingerprints(store))


def publish_installer(store: Store, public_url: Callable[[str], str]) -> bool:
    """Put install.sh at the store's root unless the same script is already there (keys/ must
    be published first: a new key is baked in by the next publish)."""
    wanted = wanted_installer(store, public_url)
    if read_installer(store) == wanted:
        return False
    store.put(INSTALLER_KEY, wanted, content_type=INSTALLER_TYPE)
    return True


def pin_signing_key(store: Store, key_fingerprint: str) -> bool:
    """After a signed write of versions.json: if the served install.sh pins keys but not
    key_fingerprint (the key that just signed: a rotated key, listed under keys/ by now), pin
    the store's keys in it, base URL and all else kept. Otherwise every install refuses
    versions.json ("not signed by the pinned key") until Finalize rewrites install.sh, hours
    later, or never if that Finalize fails. An install.sh pinning no key checks no signature
    and is left to Finalize, as is a store without one. One read of install.sh (a few kB) per
    signed write; a conditional write, retried; True if it wrote."""
    for _ in range(PIN_ROUNDS):
        try:
            installer, etag = store.read(INSTALLER_KEY)
        except StoreNotFound:
            return False
        pinned = embedded_fingerprints(installer)
        if key_fingerprint in pinned:
            return False
        keys = store_fingerprints(store)
        if not pinned or key_fingerprint not in keys:
            return False  # checks no signature; or a key not listed (yet) nobody could fetch
        wanted = render_fingerprints(installer, keys)
        try:
            store.put(INSTALLER_KEY, wanted, if_match=etag, content_type=INSTALLER_TYPE)
        except StoreConflict:
            continue  # another publisher rewrote it: look again
        return True
    return False


def render_fingerprints(installer: bytes, fingerprints: Sequence[str]) -> bytes:
    """install.sh as published, with fingerprints as the keys it pins (render_installer's line)."""
    for name in fingerprints:
        if not KEY_FINGERPRINT.fullmatch(name):
            raise ValueError(f"not a key fingerprint: {name!r}")
    line = f'BAKED_FINGERPRINTS="{" ".join(fingerprints)}"'
    return _FINGERPRINTS_LINE.sub(lambda _: line, installer.decode(), count=1).encode()
