"""The registry's runtime_dependencies: the unversioned library packages a tarball of the platform
may need, the union over the series built there. 3.9-3.12 link libcrypt (_crypt) and, where
the build root has libnsl's headers, libnsl and libtirpc (nis): the lists name them (they
did not, and 3.9.2/3.11.2 tarballs failed to import _crypt and nis with only those installed).
The builder's own .deb and .rpm compute theirs from the binaries
(tests/builder/test_package_dependencies.py)."""

from __future__ import annotations

import json

from buildfarm.platforms import builder_image_dir, load_registry

NSL_DEVEL = {"libnsl-dev", "libnsl2-devel", "libnsl-devel"}


def builds_nis(platform_id: str) -> bool:
    registry = load_registry()
    return bool(NSL_DEVEL & set(registry.build_dependencies(platform_id, "x86_64")))


def test_deb_platforms_name_libcrypt_and_libtirpc_of_their_abi() -> None:
    for platform in load_registry().platforms.values():
        if platform.family != "deb":
            continue
        deps = set(platform.runtime_dependencies)
        assert "libcrypt1" in deps, platform.id
        # The 64-bit time_t transition renamed both (trixie, noble and later).
        tirpc = {"libtirpc3t64"} if "libssl3t64" in deps else {"libtirpc3"}
        assert deps & {"libtirpc3", "libtirpc3t64"} == tirpc, platform.id


def test_nis_libraries_are_named_exactly_where_nis_is_built() -> None:
    for platform in load_registry().platforms.values():
        deps = set(platform.runtime_dependencies)
        nis = {"libnsl2"} | ({"libtirpc3", "libtirpc3t64", "libtirpc"} & deps)
        if builds_nis(platform.id):
            assert "libnsl2" in deps and len(nis) == 2, platform.id
        else:
            assert not any("nsl" in dep or "tirpc" in dep for dep in deps), platform.id


def test_rpm_platforms_name_their_libcrypt_package() -> None:
    for platform in load_registry().platforms.values():
        if platform.family == "rpm":
            suse = platform.os_release.id == "opensuse-leap"
            assert ("libcrypt1" if suse else "libxcrypt") in platform.runtime_dependencies, platform.id


def test_the_registry_says_the_builders_packages_compute_their_own() -> None:
    about = json.loads((builder_image_dir() / "platforms.json").read_text())["about"]
    assert "runtime_dependencies" in about and "dpkg-shlibdeps" in about
