"""Builder fixtures: the driver module, fast build settings, shared real builds, debootstrap roots.

The real builds are session-scoped and shared by the tests that inspect them. ccache
lives in the repository's .cache/ccache (reruns are fast; CI starts cold) and the
chroot runner's build roots in .cache/roots (created on first use).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from builder_helpers import (
    REPO,
    SHORT_PROFILE_TASK,
    SHORT_SELFTEST,
    TEST_VERSION,
    BuiltCell,
    cli_build,
    load_build_module,
)


@pytest.fixture(scope="session")
def build_py() -> ModuleType:
    """builder_image/build.py imported by path (it is a script, not part of the package)."""
    return load_build_module()


@pytest.fixture(scope="session")
def fast_build_env() -> Iterator[None]:
    """Environment for real builds in tests: ccache, a short PGO task and self-test."""
    settings = {
        "BUILDFARM_CCACHE": "1",
        "CCACHE_DIR": str(REPO / ".cache" / "ccache"),
        "BUILDFARM_PROFILE_TASK": SHORT_PROFILE_TASK,
        "BUILDFARM_SELFTEST_TESTS": SHORT_SELFTEST,
        "BUILDFARM_ROOTS_DIR": os.environ.get("BUILDFARM_ROOTS_DIR", str(REPO / ".cache" / "roots")),
    }
    saved = {name: os.environ.get(name) for name in settings}
    os.environ.update(settings)
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def _needs_root() -> None:
    if os.geteuid() != 0 or not shutil.which("debootstrap"):
        pytest.skip("needs root and debootstrap")


@pytest.fixture(scope="session")
def host_build(tmp_path_factory, source_mirror, fast_build_env) -> BuiltCell:
    """A real 3.13.5 --optimization none build of this machine's platform (host runner)."""
    from buildfarm.platforms import load_registry
    from buildfarm.runners.local import host_platform_id

    platform = host_platform_id(load_registry())
    if platform is None:
        pytest.skip("this machine is not a registered platform")
    store = tmp_path_factory.mktemp("host-store")
    code, output = cli_build(
        [
            TEST_VERSION,
            "--platform",
            platform,
            "--runner",
            "host",
            "--optimization",
            "none",
            "--store",
            str(store),
            "--source-mirror",
            source_mirror,
        ]
    )
    assert code == 0, output
    return BuiltCell(store, TEST_VERSION, platform, "x86_64", 1, output)


@pytest.fixture(scope="session")
def chroot_build(tmp_path_factory, source_mirror, fast_build_env) -> BuiltCell:
    """A real 3.13.5 pgo+lto build for debian-11 (bullseye) with the chroot runner."""
    _needs_root()
    store = tmp_path_factory.mktemp("chroot-store")
    code, output = cli_build(
        [
            TEST_VERSION,
            "--platform",
            "debian-11",
            "--runner",
            "chroot",
            "--optimization",
            "pgo+lto",
            "--store",
            str(store),
            "--source-mirror",
            source_mirror,
        ]
    )
    assert code == 0, output
    return BuiltCell(store, TEST_VERSION, "debian-11", "x86_64", 1, output)


@pytest.fixture(scope="session")
def pristine_roots(tmp_path_factory) -> Iterator[callable]:
    """pristine(codename) -> a minbase debootstrap root created once per session (never mounted;
    tests work on copies)."""
    _needs_root()
    from buildfarm.runners import roots

    base = tmp_path_factory.mktemp("pristine-roots")
    made: dict[str, Path] = {}

    def pristine(codename: str) -> Path:
        if codename not in made:
            made[codename] = roots.debootstrap(codename, base / codename)
        return made[codename]

    yield pristine
    for path in made.values():
        roots.remove_root(path)


@pytest.fixture
def fresh_root(pristine_roots, tmp_path) -> Iterator[callable]:
    """fresh(codename) -> a private copy of a pristine minbase root for this test."""
    from buildfarm.runners import roots

    copies: list[Path] = []

    def fresh(codename: str) -> Path:
        copy = roots.copy_root(pristine_roots(codename), tmp_path / f"root-{codename}-{len(copies)}")
        copies.append(copy)
        return copy

    yield fresh
    for path in copies:
        roots.remove_root(path)
