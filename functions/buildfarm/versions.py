"""CPython version strings: exact releases (3.13.5, 3.14.0rc2) and series (3.13)."""

from __future__ import annotations

import re

from packaging.version import Version

# ASCII digits only, whole string: these strings end up in paths and URLs. No leading zeros:
# "3.13.05" would be a second name for 3.13.5 (another cell, another uv entry) whose python.org
# file does not exist.
_NUMBER = r"(?:0|[1-9][0-9]?)"
_RELEASE = re.compile(rf"3\.{_NUMBER}\.{_NUMBER}(?:(?:a|b|rc){_NUMBER})?", re.ASCII)
_SERIES = re.compile(rf"3\.{_NUMBER}", re.ASCII)
_LEADING_ZERO = re.compile(r"(?<![0-9])0+(?=[0-9])", re.ASCII)
# Well formed but not CPython 3 (2.7.18, 4.0): said so, rather than called malformed.
_ANY_MAJOR = re.compile(rf"({_NUMBER})\.{_NUMBER}(?:\.{_NUMBER}(?:(?:a|b|rc){_NUMBER})?)?", re.ASCII)


class VersionError(ValueError):
    pass


def parse_release(text: str) -> Version:
    """An exact CPython release, e.g. '3.13.5' or '3.14.0rc2'; anything else raises VersionError."""
    if not isinstance(text, str) or not _RELEASE.fullmatch(text):
        raise VersionError(_malformed(text, "expected e.g. 3.13.5 or 3.14.0rc2"))
    return Version(text)


def _malformed(text: object, expected: str) -> str:
    """The error for a malformed version: a leading zero is named, with the version meant,
    and a version of another major (2.7.18) is called unsupported."""
    if isinstance(text, str) and (match := _ANY_MAJOR.fullmatch(text)) and match[1] != "3":
        return f"unsupported Python version {text!r} (only CPython 3 is built; {expected})"
    meant = _LEADING_ZERO.sub("", text) if isinstance(text, str) else ""
    if meant != text and (_RELEASE.fullmatch(meant) or _SERIES.fullmatch(meant)):
        expected = f"no leading zeros: {meant}"
    return f"malformed Python version {text!r} ({expected})"


def is_series(text: str) -> bool:
    return isinstance(text, str) and bool(_SERIES.fullmatch(text))


def check_version_or_series(text: str) -> str:
    """A release (3.13.5, 3.14.0rc2) or a series (3.13), as given; VersionError otherwise.
    Everything that takes a version takes a series too: it stands for its newest known release."""
    if is_series(text) or (isinstance(text, str) and _RELEASE.fullmatch(text)):
        return text
    raise VersionError(_malformed(text, "expected a release like 3.13.5 or 3.14.0rc2, or a series like 3.13"))


def series_of(version: str) -> str:
    v = parse_release(version)
    return f"{v.major}.{v.minor}"


def sort_newest_first(versions: list[str]) -> list[str]:
    return sorted(set(versions), key=Version, reverse=True)
