"""CPython version strings: exact releases (3.13.5, 3.14.0rc2) and series (3.13)."""

from __future__ import annotations

import re

from packaging.version import Version

_RELEASE = re.compile(
    r"^(?P<major>3)\.(?P<minor>\d{1,2})\.(?P<micro>\d{1,2})(?:(?P<pre>a|b|rc)(?P<pre_n>\d{1,2}))?$"
)
_SERIES = re.compile(r"^3\.[0-9]{1,2}$")


class VersionError(ValueError):
    pass


def parse_release(text: str) -> Version:
    """An exact CPython release, e.g. '3.13.5' or '3.14.0rc2'; anything else raises VersionError."""
    if not isinstance(text, str) or not _RELEASE.match(text):
        raise VersionError(f"malformed Python version {text!r} (expected e.g. 3.13.5 or 3.14.0rc2)")
    return Version(text)


def is_series(text: str) -> bool:
    return isinstance(text, str) and bool(_SERIES.match(text))


def series_of(version: str) -> str:
    v = parse_release(version)
    return f"{v.major}.{v.minor}"


def sort_newest_first(versions: list[str]) -> list[str]:
    return sorted(set(versions), key=Version, reverse=True)
