"""One runtime build, end to end: choose the Python build, assemble and self-test the tree in
a staging directory, relocate it, self-test it at its prefix, package and publish it.

Every check runs before the first write to the store: a failed or refused build publishes
nothing. The farm's Batch job calls build_runtime with the cell and the build number it claimed.

A Batch job is retried after a Spot reclaim, so the number's directory may hold an earlier
attempt's files (create-only: nothing can replace or delete them). A complete earlier attempt
(its manifest.json, written last, records this very build) is kept: nothing is rebuilt and
PublishRuntime verifies it. A partial one (files but no manifest.json) fails the retry at once,
naming them, before any build work: a rebuild never reproduces the same bytes (tar, gzip and
package timestamps), so its upload could only collide. The cell then fails; the next run builds
the next number (next_build counts past the spoiled one).
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from buildfarm import __version__
from buildfarm.errors import UsageError
from buildfarm.runtimes import build as steps
from buildfarm.runtimes import uv_cache
from buildfarm.runtimes.build import RuntimeBuildError
from buildfarm.runtimes.definitions import RuntimeDefinition
from buildfarm.runtimes.keys import MANIFEST_FILE, runtime_artifact_dir, runtime_manifest_key
from buildfarm.runtimes.package import SCHEMA_VERSION, publish
from buildfarm.runtimes.python_source import PythonBuild, fetch_tarball, local_tarball, matches, select_python
from buildfarm.runtimes.selftest import installed_distributions, moved_check, run_selftests
from buildfarm.store import Store, StoreError


@dataclass(frozen=True)
class RuntimeRequest:
    definition: RuntimeDefinition
    version: str  # the runtime's version (resolved: override, TOML or git tag)
    platform: str
    arch: str
    store: Store
    cache: Path  # uv's download cache
    python_tarball: Path | None = None  # instead of the store's newest published build
    build: int | None = None  # the build number a farm's claim gave (else the next free one)


def find_uv() -> str:
    """The uv binary: the `uv` package's (a dependency of the dev install), else PATH."""
    try:
        from uv import find_uv_bin

        return find_uv_bin()
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
        if not found:
            raise UsageError("uv is needed to build runtimes (pip install uv)") from None
        return found


def check_cell(request: RuntimeRequest) -> None:
    definition = request.definition
    if not definition.supports(request.platform, request.arch):
        raise UsageError(
            f"runtime {definition.name!r} is not defined for {request.platform}/{request.arch} "
            f"(platforms: {', '.join(definition.platforms)}; arches: {', '.join(definition.arches)})"
        )


def _python(request: RuntimeRequest, work: Path) -> tuple[PythonBuild, Path]:
    tarball = work / "python.tar.gz"
    if request.python_tarball is not None:
        return local_tarball(request.python_tarball, tarball), tarball
    chosen = select_python(request.store, request.definition.python, request.platform, request.arch)
    return chosen, fetch_tarball(request.store, chosen, tarball)


def _manifest(request: RuntimeRequest, python: PythonBuild, version: str, uv: str) -> dict[str, Any]:
    definition = request.definition
    return {
        "schema_version": SCHEMA_VERSION,
        "runtime": {"name": definition.name, "version": request.version, "prefix": definition.prefix},
        "platform": request.platform,
        "arch": request.arch,
        "build": 0,  # set when the build number is claimed
        "python": {"version": version, "build": python.build, "tarball": python.key, "sha256": python.sha256},
        "requirements": {
            "kind": definition.lock_kind,
            "file": definition.requirements,
            "sha256": definition.lock_sha256(),
        },
        "installer": {"tool": "uv", "version": steps.run_step([uv, "--version"], "uv --version").split()[1]},
        "builder": {"buildfarm": __version__},
        "built_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def assemble(request: RuntimeRequest, uv: str, work: Path) -> tuple[steps.Tree, dict[str, Any]]:
    """The self-tested, relocated tree and its manifest (without build number and artifacts)."""
    python, tarball = _python(request, work)
    tree = steps.Tree(work / "root" / request.definition.prefix.lstrip("/"), request.definition.prefix)
    version = steps.extract_python(tarball, tree)
    if not matches(request.definition.python, version):
        wanted = f"{request.definition.name} needs Python {request.definition.python}"
        raise UsageError(f"the Python tarball is {version}, but {wanted}")
    series = ".".join(version.split(".")[:2])
    steps.create_venv(uv, tree)
    requirements = steps.requirements_file(uv, request.definition, work)
    steps.install_requirements(uv, tree, requirements, request.cache, request.definition.lock_kind)
    steps.compile_bytecode(tree, series)
    selftest = run_selftests(uv, tree, series)
    steps.relocate(tree)
    selftest["moved"] = moved_check(tree, selftest["imports"])
    manifest = _manifest(request, python, version, uv)
    manifest["packages"] = installed_distributions(tree.site_packages(series))
    manifest["selftest"] = selftest
    return tree, manifest


def earlier_attempt(request: RuntimeRequest) -> tuple[str, dict[str, Any]] | None:
    """A claimed build number's directory as an earlier attempt of this job left it: None when
    empty; (directory, manifest) when complete; RuntimeBuildError when partial or not this
    build's."""
    if request.build is None:
        return None
    cell = (request.definition.name, request.version, request.platform, request.arch)
    directory = runtime_artifact_dir(*cell, request.build)
    names = sorted(info.key.rsplit("/", 1)[-1] for info in request.store.list(f"{directory}/"))
    if not names:
        return None
    where = request.store.url(directory)
    if MANIFEST_FILE not in names:
        raise RuntimeBuildError(
            f"{where}/ holds a partial upload of an earlier attempt ({', '.join(names)}; no "
            f"{MANIFEST_FILE}) and builds are never overwritten: build {request.build} fails, "
            "the next run builds the next number"
        )
    try:
        manifest, _ = request.store.read_json(runtime_manifest_key(directory))
    except (StoreError, ValueError) as error:
        raise RuntimeBuildError(f"{where}/{MANIFEST_FILE} of an earlier attempt: {error}") from None
    recorded = manifest.get("runtime") if isinstance(manifest, dict) else None
    found = (
        (recorded.get("name"), recorded.get("version"), manifest.get("platform"), manifest.get("arch"))
        if isinstance(recorded, dict)
        else None
    )
    if found != cell or manifest.get("build") != request.build:
        raise RuntimeBuildError(f"{where}/{MANIFEST_FILE} is not this build's; builds are never overwritten")
    return directory, manifest


def build_runtime(request: RuntimeRequest) -> tuple[str, dict[str, Any]]:
    """Build and publish one runtime cell: (its store directory, its manifest). At a claimed
    build number an earlier attempt completed, that attempt's (nothing is rebuilt)."""
    check_cell(request)
    earlier = earlier_attempt(request)
    if earlier is not None:
        return earlier
    uv = find_uv()
    # Beside an S3 store, a fresh job's cache comes from the store and goes back to it after.
    before = uv_cache.prepare(request.store, request.platform, request.arch, request.cache)
    with tempfile.TemporaryDirectory(prefix="buildfarm-runtime-") as temp:
        work = Path(temp)
        _, manifest = assemble(request, uv, work)
        directory = publish(request.store, work / "root", manifest, work, request.build)
    if before is not None:
        uv_cache.save(request.store, request.platform, request.arch, request.cache, before)
    return directory, manifest
