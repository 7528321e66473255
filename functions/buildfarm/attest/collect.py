"""The SBOM fact collector as the buildfarm package sees it.

Its code is builder_image/sbom_facts/ (bundled, linked, toolchain, collect), stated once:
the builder runs it with the interpreter it has just built (standard library only), and
every runner has builder_image/ (the images copy it, the chroot runner binds it, the host
runner runs it in place) while none of them has functions/. The publishing side renders the
SBOM with the same dataclasses: this module loads that package as buildfarm.attest.sbom_facts
from builder_image_dir() (a checkout's builder_image/, or the copy a wheel carries), and
buildfarm.attest.bundled, .linked and .toolchain are its modules under the names sbom.py
imports.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from types import ModuleType

from buildfarm.platforms import builder_image_dir

PACKAGE = "buildfarm.attest.sbom_facts"
PACKAGE_DIR = "sbom_facts"
"""The collector's directory in builder_image/."""


def collector_package() -> ModuleType:
    """builder_image/sbom_facts/ as the package buildfarm.attest.sbom_facts (loaded once)."""
    loaded = sys.modules.get(PACKAGE)
    if loaded is None:
        directory = builder_image_dir() / PACKAGE_DIR
        spec = importlib.util.spec_from_file_location(
            PACKAGE, directory / "__init__.py", submodule_search_locations=[str(directory)]
        )
        if spec is None or spec.loader is None:
            raise ImportError(f"no SBOM fact collector in {directory}")
        loaded = importlib.util.module_from_spec(spec)
        sys.modules[PACKAGE] = loaded
        spec.loader.exec_module(loaded)
    return loaded


def collector_module(name: str) -> ModuleType:
    """One module of the collector: "bundled", "linked", "toolchain" or "collect"."""
    collector_package()
    return importlib.import_module(f"{PACKAGE}.{name}")
