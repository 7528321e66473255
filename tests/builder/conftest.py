"""Builder fixtures: the driver module. The real builds the builder tests inspect
(host_build, chroot_build, pgo_build), the fast build settings and the debootstrap roots
are shared with the farm tests: see tests/conftest.py."""

from __future__ import annotations

from types import ModuleType

import pytest
from builder_helpers import load_build_module


@pytest.fixture(scope="session")
def build_py() -> ModuleType:
    """builder_image/build.py imported by path (it is a script, not part of the package)."""
    return load_build_module()
