"""The platform registry: complete, consistent, and matched from /etc/os-release."""

from __future__ import annotations

import pytest

from buildfarm.platforms import UnknownPlatformError, load_registry
from buildfarm.versions import VersionError, is_series, parse_release

EXPECTED_PLATFORMS = {
    "ubuntu-2004", "ubuntu-2204", "ubuntu-2404", "ubuntu-2604",
    "debian-11", "debian-12", "debian-13",
    "rhel-8", "rhel-9", "rhel-10",
    "opensuse-155", "opensuse-156", "amazonlinux-2023",
}  # fmt: skip


def test_registry_lists_every_platform_with_both_arches() -> None:
    registry = load_registry()
    assert set(registry.platforms) == EXPECTED_PLATFORMS
    for platform in registry.platforms.values():
        assert set(platform.arches) == {"x86_64", "aarch64"}
        assert platform.runtime_dependencies, platform.id
        assert platform.family in registry.families


def test_unknown_platform_names_the_value() -> None:
    with pytest.raises(UnknownPlatformError, match="'debian-99'"):
        load_registry().get("debian-99")


@pytest.mark.parametrize(
    ("os_id", "version_id", "id_like", "expected"),
    [
        ("debian", "12", (), "debian-12"),
        ("ubuntu", "24.04", ("debian",), "ubuntu-2404"),
        ("rocky", "9.4", ("rhel", "centos", "fedora"), "rhel-9"),
        ("almalinux", "8.10", ("rhel", "centos", "fedora"), "rhel-8"),
        ("opensuse-leap", "15.6", ("suse", "opensuse"), "opensuse-156"),
        ("amzn", "2023", ("fedora",), "amazonlinux-2023"),
        ("ubuntu", "23.10", ("debian",), None),
        ("arch", "rolling", (), None),
    ],
)
def test_platform_from_os_release(os_id, version_id, id_like, expected) -> None:
    match = load_registry().for_os_release(os_id, version_id, id_like)
    assert (match.id if match else None) == expected


@pytest.mark.parametrize("text", ["3.13.5", "3.14.0rc2", "3.9.21", "3.15.0a1", "3.13.0b3"])
def test_release_versions_parse(text: str) -> None:
    assert str(parse_release(text)) == text


@pytest.mark.parametrize("text", ["3.13", "3", "3.13.5.1", "v3.13.5", "3.13.5rc", "2.7.18", "3.13.5 ", ""])
def test_malformed_versions_are_rejected_by_name(text: str) -> None:
    with pytest.raises(VersionError, match=repr(text).replace(".", r"\.")):
        parse_release(text)


def test_series() -> None:
    assert is_series("3.13") and not is_series("3.13.5") and not is_series("3.x")
