"""install.sh at the store's root: buildfarm/installer/install.sh with the store's public URL
baked in as its default.

The baked-in URL doubles as the record of the base URL the derived files were last written
for: a publish with nothing new compares it (one read) to decide whether the store moved.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from importlib import resources

from buildfarm.layout import INSTALLER_KEY
from buildfarm.store import Store, StoreNotFound

log = logging.getLogger(__name__)

INSTALLER_PLACEHOLDER = "@BASE_URL@"
# The base URL is baked into a shell script: only characters that are inert in a
# double-quoted bash string are accepted.
SHELL_INERT_URL = re.compile(r"(https?|file)://[][A-Za-z0-9._~%+/:@=-]+")  # fullmatch: no newline
_DEFAULT_LINE = re.compile(r'^DEFAULT_BASE_URL="([^"\n]*)"$', re.MULTILINE)


def render_installer(base_url: str) -> bytes:
    """install.sh with its default store URL set to base_url (left unset, so the script asks
    for --base-url, if base_url has characters a shell could act on)."""
    script = (resources.files("buildfarm") / "installer" / "install.sh").read_text()
    base_url = base_url.rstrip("/")
    if SHELL_INERT_URL.fullmatch(base_url):
        script = script.replace(
            f'DEFAULT_BASE_URL="{INSTALLER_PLACEHOLDER}"', f'DEFAULT_BASE_URL="{base_url}"', 1
        )
    else:
        log.warning("not baking base URL %r into install.sh: unexpected characters", base_url)
    return script.encode()


def embedded_base_url(script: bytes) -> str | None:
    """The base URL an install.sh was published with; None if it has none baked in."""
    match = _DEFAULT_LINE.search(script.decode(errors="replace"))
    if match is None or match.group(1) == INSTALLER_PLACEHOLDER:
        return None
    return match.group(1)


def installer_base(public_url: Callable[[str], str]) -> str:
    """The base URL (no trailing '/') that public_url puts in front of every key."""
    return public_url(INSTALLER_KEY).removesuffix(INSTALLER_KEY).rstrip("/")


def read_installer(store: Store) -> bytes | None:
    try:
        return store.read(INSTALLER_KEY)[0]
    except StoreNotFound:
        return None


def publish_installer(store: Store, public_url: Callable[[str], str]) -> bool:
    """Put install.sh at the store's root unless the same script is already there."""
    wanted = render_installer(installer_base(public_url))
    if read_installer(store) == wanted:
        return False
    store.put(INSTALLER_KEY, wanted, content_type="text/x-shellscript; charset=utf-8")
    return True
