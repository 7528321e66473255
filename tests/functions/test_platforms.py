"""The platform registry: complete, consistent, and matched from /etc/os-release."""

from __future__ import annotations

import json
import re
from datetime import date

import pytest

from buildfarm.platforms import (
    ARCH_ALIASES,
    DEB_ARCH,
    PLATFORM_ID,
    RegistryError,
    UnknownArchError,
    UnknownPlatformError,
    builder_image_dir,
    canonical_arch,
    load_registry,
)
from buildfarm.versions import VersionError, is_series, parse_release

EXPECTED_PLATFORMS = {
    "ubuntu-2004", "ubuntu-2204", "ubuntu-2404", "ubuntu-2604",
    "debian-11", "debian-12", "debian-13",
    "rhel-8", "rhel-9", "rhel-10",
    "opensuse-155", "opensuse-156", "opensuse-160", "amazonlinux-2023",
}  # fmt: skip
END_OF_SUPPORT = {
    "debian-11": date(2026, 8, 31), "debian-12": date(2028, 6, 30), "debian-13": date(2030, 6, 30),
    "ubuntu-2004": date(2025, 5, 31), "ubuntu-2204": date(2027, 6, 30), "ubuntu-2404": date(2029, 6, 30),
    "ubuntu-2604": date(2031, 6, 30), "rhel-8": date(2029, 5, 31), "rhel-9": date(2032, 5, 31),
    "rhel-10": date(2035, 5, 31), "opensuse-155": date(2024, 12, 31), "opensuse-156": date(2026, 4, 30),
    "opensuse-160": date(2027, 10, 31), "amazonlinux-2023": date(2029, 6, 30),
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
    ("typed", "suggested"),
    [
        ("debain-12", "debian-12"),
        ("Debian-12", "debian-12"),
        ("ubuntu-20.04", "ubuntu-2004"),
        ("rhel9", "rhel-9"),
    ],
)
def test_unknown_platform_suggests_the_closest(typed: str, suggested: str) -> None:
    with pytest.raises(UnknownPlatformError) as caught:
        load_registry().get(typed)
    assert str(caught.value).startswith(
        f"unknown platform {typed!r} (did you mean {suggested}?); known: ubuntu-2004"
    )


def test_arch_aliases_are_the_deb_names() -> None:
    assert ARCH_ALIASES == {"amd64": "x86_64", "arm64": "aarch64"}
    assert all(DEB_ARCH[arch] == alias for alias, arch in ARCH_ALIASES.items())
    assert [canonical_arch(name) for name in ("x86_64", "amd64", "aarch64", "arm64")] == [
        "x86_64", "x86_64", "aarch64", "aarch64",
    ]  # fmt: skip
    assert canonical_arch("arm64", among=("aarch64",)) == "aarch64"


@pytest.mark.parametrize(
    ("typed", "among", "message"),
    [
        (
            "x86-64",
            ("x86_64", "aarch64"),
            "unknown arch 'x86-64' (did you mean x86_64?); known: x86_64, aarch64, amd64, arm64",
        ),
        ("AMD64", ("x86_64", "aarch64"), "unknown arch 'AMD64' (did you mean amd64?)"),
        ("riscv64", ("x86_64", "aarch64"), "unknown arch 'riscv64'; known: x86_64, aarch64, amd64, arm64"),
        ("amd64", ("aarch64",), "arch 'amd64' is not one of aarch64"),
    ],
)
def test_unknown_arch_names_it_and_the_closest(typed: str, among: tuple[str, ...], message: str) -> None:
    with pytest.raises(UnknownArchError) as caught:
        canonical_arch(typed, among)
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize(
    ("os_id", "version_id", "id_like", "expected"),
    [
        ("debian", "12", (), "debian-12"),
        ("ubuntu", "24.04", ("debian",), "ubuntu-2404"),
        ("rocky", "9.4", ("rhel", "centos", "fedora"), "rhel-9"),
        ("almalinux", "8.10", ("rhel", "centos", "fedora"), "rhel-8"),
        ("opensuse-leap", "15.6", ("suse", "opensuse"), "opensuse-156"),
        ("opensuse-leap", "16.0", ("suse", "opensuse"), "opensuse-160"),
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


@pytest.mark.parametrize(
    "text",
    ["3.13", "3", "3.13.5.1", "v3.13.5", "3.13.5rc", "2.7.18", "3.13.5 ", "", "3.13.5\n", "3.\u0661\u0663.5"],
)
def test_malformed_versions_are_rejected_by_name(text: str) -> None:
    with pytest.raises(VersionError, match=re.escape(repr(text))):
        parse_release(text)


def test_series() -> None:
    assert is_series("3.13") and not is_series("3.13.5") and not is_series("3.x")
    assert not is_series("3.13\n") and not is_series("3.\u0661\u0663")  # whole string, ASCII digits


def test_every_platform_has_its_end_of_support_date() -> None:
    registry = load_registry()
    assert {pid: p.end_of_support for pid, p in registry.platforms.items()} == END_OF_SUPPORT
    raw = json.loads((builder_image_dir() / "platforms.json").read_text())
    assert not any("eol" in entry for entry in raw["platforms"].values())  # the old flag is gone


def test_series_end_of_life_is_data() -> None:
    ends = load_registry().series_end_of_life
    assert ends == {f"3.{minor}": date(2016 + minor, 10, 31) for minor in range(9, 16)}


@pytest.mark.parametrize(
    ("today", "live"),
    [
        (date(2026, 8, 31), True),  # the last day of support is still supported
        (date(2026, 9, 1), False),
    ],
)
def test_platform_is_live_until_its_end_of_support(today: date, live: bool) -> None:
    registry = load_registry()
    assert registry.get("debian-11").live(today) is live
    assert ("debian-11" in registry.live_platforms(today)) is live


def test_live_platforms_on_a_fixed_day() -> None:
    registry = load_registry()
    assert registry.live_platforms(date(2026, 11, 30)) == (
        "ubuntu-2204", "ubuntu-2404", "ubuntu-2604", "debian-12", "debian-13",
        "rhel-8", "rhel-9", "rhel-10", "opensuse-160", "amazonlinux-2023",
    )  # fmt: skip
    assert registry.live_platforms(date(2026, 11, 30), among=["debian-11", "debian-12"]) == ("debian-12",)


def test_opensuse_160_is_leap_16_without_libnsl() -> None:
    leap16 = load_registry().get("opensuse-160")
    assert leap16.base_image == "opensuse/leap:16.0" and leap16.os_release.version_id == "16.0"
    assert "libopenssl3" in leap16.runtime_dependencies
    assert not any("nsl" in dep for dep in (*leap16.runtime_dependencies, *leap16.build_dependencies))


def test_unbuildable_series_needs_a_series_and_a_reason(tmp_path) -> None:
    raw = json.loads((builder_image_dir() / "platforms.json").read_text())
    raw["platforms"]["rhel-10"]["unbuildable_series"] = {"3.9": "OpenSSL 3.5 without the 1.1 API"}
    good = tmp_path / "good.json"
    good.write_text(json.dumps(raw))
    assert load_registry(good).unbuildable_reason("rhel-10", "3.9") == "OpenSSL 3.5 without the 1.1 API"
    assert load_registry(good).unbuildable_reason("rhel-10", "3.13") is None
    raw["platforms"]["rhel-10"]["unbuildable_series"] = {"3.9.2": "why"}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(raw))
    with pytest.raises(RegistryError, match=r"3\.9\.2"):
        load_registry(bad)


@pytest.mark.parametrize("bad_id", ["Debian-12", "debian_12", "-x", "debian 12", "debian-12\n", "d" * 64])
def test_a_platform_id_outside_the_pattern_is_refused_by_name(tmp_path, bad_id: str) -> None:
    """Ids name store keys and packages and ride in install.sh's shell strings: the registry is
    where they are checked, once."""
    raw = json.loads((builder_image_dir() / "platforms.json").read_text())
    raw["platforms"][bad_id] = {**raw["platforms"]["debian-12"], "id": bad_id}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(RegistryError, match=re.escape(repr(bad_id))):
        load_registry(path)
    assert all(PLATFORM_ID.fullmatch(pid) for pid in load_registry().platforms)


def test_openssl_series_of_each_platform(tmp_path) -> None:
    """Each platform says which OpenSSL series its development package installs (the
    self-test's 3.9 test_ssl exclusions key on it); it agrees with the runtime package."""
    registry = load_registry()
    three = {pid for pid, platform in registry.platforms.items() if platform.openssl == "3"}
    assert three == {
        "debian-12", "debian-13", "ubuntu-2204", "ubuntu-2404", "ubuntu-2604",
        "rhel-9", "rhel-10", "amazonlinux-2023", "opensuse-160",
    }  # fmt: skip
    runtime = {"1.1": {"libssl1.1", "libopenssl1_1"}, "3": {"libssl3", "libssl3t64", "libopenssl3"}}
    for platform in registry.platforms.values():
        if platform.family == "deb" or platform.os_release.id == "opensuse-leap":
            named = runtime[platform.openssl] & set(platform.runtime_dependencies)
            other = runtime["3" if platform.openssl == "1.1" else "1.1"] & set(platform.runtime_dependencies)
            assert named and not other, platform.id
        else:  # RHEL clones and Amazon Linux: one package name for either series
            assert "openssl-libs" in platform.runtime_dependencies, platform.id
    raw = json.loads((builder_image_dir() / "platforms.json").read_text())
    raw["platforms"]["debian-12"]["openssl"] = "3.0"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(raw))
    with pytest.raises(RegistryError, match="openssl"):
        load_registry(bad)


# Fedora's names (RHEL clones, Amazon Linux) -> openSUSE's, where they differ and no package
# provides the other name (openSUSE's bzip2.spec and expat.spec; see checked_against).
SUSE_NAMES = {"bzip2-devel": "libbz2-devel", "expat-devel": "libexpat-devel"}


def test_rpm_build_dependencies_use_each_distributions_names() -> None:
    registry = load_registry()
    for platform_id, platform in registry.platforms.items():
        if platform.family != "rpm":
            continue
        deps = set(registry.build_dependencies(platform_id, "x86_64"))
        suse = platform.os_release.id == "opensuse-leap"
        for fedora, opensuse in SUSE_NAMES.items():
            assert (opensuse if suse else fedora) in deps, platform_id
            assert (fedora if suse else opensuse) not in deps, platform_id
        assert len(deps) == len(registry.build_dependencies(platform_id, "x86_64")), platform_id


def test_every_rpm_platform_says_where_its_package_names_were_checked(tmp_path) -> None:
    registry = load_registry()
    for platform in registry.platforms.values():
        if platform.family == "rpm":
            assert platform.checked_against, platform.id
            for checked in platform.checked_against:
                assert checked.source.strip() and checked.what.strip(), platform.id
    raw = json.loads((builder_image_dir() / "platforms.json").read_text())
    assert "checked_against" in raw["about"]
    for change, message in (
        (lambda entry: entry.pop("checked_against"), "needs checked_against"),
        (lambda entry: entry["checked_against"][0].update(what=""), "what"),
        (lambda entry: entry["checked_against"][0].update(url="x"), "url"),
    ):
        broken = json.loads(json.dumps(raw))
        change(broken["platforms"]["rhel-9"])
        path = tmp_path / "bad.json"
        path.write_text(json.dumps(broken))
        with pytest.raises(RegistryError, match=message):
            load_registry(path)
