"""CPython version strings: one spelling per release, so one cell, one uv entry and a source
file name python.org has."""

from __future__ import annotations

import pytest

from buildfarm.release_import import ReleaseInputError, new_release
from buildfarm.versions import VersionError, check_version_or_series, parse_release


@pytest.mark.parametrize(
    ("text", "meant"),
    [
        ("3.13.05", "3.13.5"),
        ("3.14.0rc02", "3.14.0rc2"),
        ("3.09.1", "3.9.1"),
        ("3.09", "3.9"),
        ("03.13.5", "3.13.5"),
    ],
)
def test_a_leading_zero_is_refused_naming_the_version_meant(text: str, meant: str | None) -> None:
    hint = f"no leading zeros: {meant}" if meant else "expected"
    with pytest.raises(VersionError, match=rf"^malformed Python version '{text}' \({hint}"):
        check_version_or_series(text)
    if text.count(".") == 2:
        with pytest.raises(VersionError, match=rf"^malformed Python version '{text}' \({hint}"):
            parse_release(text)
        with pytest.raises(ReleaseInputError, match="malformed Python version"):
            new_release(text, "ab" * 32)  # would name Python-3.13.05.tar.xz, which does not exist


@pytest.mark.parametrize("text", ["3.13.5", "3.14.0rc2", "3.14.0a1", "3.0.0", "3.10.0b10", "3.13.20"])
def test_releases_without_leading_zeros_still_parse(text: str) -> None:
    assert str(parse_release(text)) == text and check_version_or_series(text) == text


@pytest.mark.parametrize("text", ["3.13.100", "3.13.5\n", "3.\uff113.5", "3.13.x", "3.100"])
def test_other_malformed_versions_keep_their_message(text: str) -> None:
    with pytest.raises(VersionError, match=r"\(expected a release like 3\.13\.5 or 3\.14\.0rc2, or a series"):
        check_version_or_series(text)
