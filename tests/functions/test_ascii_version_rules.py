"""Version text and build locations are read with ASCII digits and whole-string rules."""

from __future__ import annotations

import pytest

from buildfarm.attest.verify_build import is_url
from buildfarm.runtimes.package import deb_version


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("v1.2", "1.2-1"),
        ("1.2", "1.2-1"),
        ("main", "0+main-1"),
        ("v", "0+v-1"),
        ("", "0+-1"),
        ("\N{SUPERSCRIPT TWO}.0", "0+\N{SUPERSCRIPT TWO}.0-1"),
        ("v\N{ARABIC-INDIC DIGIT THREE}", "0+v\N{ARABIC-INDIC DIGIT THREE}-1"),
    ],
)
def test_deb_version_starts_with_an_ascii_digit(version: str, expected: str) -> None:
    assert deb_version(version, 1) == expected


@pytest.mark.parametrize(
    ("location", "url"),
    [
        ("https://cdn.example.org/python/builds/x/1", True),
        ("HTTP://cdn.example.org/x", True),
        ("ftp://mirror.example/x", True),  # HttpBuild refuses it by name
        ("http://[::1", True),  # HttpBuild says it is not a valid URL
        ("dist/builds/x/1", False),
        ("/srv/dist", False),
        ("dist:1", False),
        ("C:/dist", False),
        (" http://x", False),
        ("//host/share", False),
    ],
)
def test_is_url_is_a_scheme_and_two_slashes(location: str, url: bool) -> None:
    assert is_url(location) is url
