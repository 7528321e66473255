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

A runtime is built where its platform is what it claims (placement_problem): in that platform's
builder image (which sets BUILDFARM_PLATFORM; Batch and `--runner docker` run it there) or on a
machine of that platform and arch. Elsewhere its venv would take the wheels uv chooses for this
machine and extensions built against this machine's libc, labelled as another platform's.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from buildfarm import __version__
from buildfarm.errors import UsageError
from buildfarm.platforms import load_registry
from buildfarm.runtimes import build as steps
from buildfarm.runtimes import uv_cache
from buildfarm.runtimes.build import RuntimeBuildError
from buildfarm.runtimes.definitions import RuntimeDefinition
from buildfarm.runtimes.keys import MANIFEST_FILE, runtime_artifact_dir, runtime_manifest_key
from buildfarm.runtimes.package import SCHEMA_VERSION, publish
from buildfarm.runtimes.python_source import (
    PythonBuild,
    check_local_tarball,
    fetch_tarball,
    local_tarball,
    matches,
    select_python,
)
from buildfarm.runtimes.selftest import installed_distributions, moved_check, run_selftests
from buildfarm.store import Store, StoreError

CACHE_ENV = "BUILDFARM_RUNTIME_CACHE"  # uv's download cache, when --cache does not name one
IMAGE_PLATFORM_ENV = "BUILDFARM_PLATFORM"  # set by the builder images (Dockerfile.deb, .rpm)


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
    execution_id: str | None = None  # the farm execution that claimed it, recorded in the manifest


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


def placement_problem(
    platform: str, arch: str, *, image_platform: str | None, host_platform: str | None, machine_arch: str
) -> str | None:
    """Why a runtime build for platform/arch must not run here, or None. Here is a builder image
    when image_platform ($BUILDFARM_PLATFORM) is set, else this machine (host_platform: its
    registry platform, None if it has none); machine_arch is the arch it runs as (uname's: an
    emulated container's is the emulated one)."""
    here = image_platform or host_platform or "not a registered platform"
    wanted = [platform] if here != platform else []
    found = [here] if here != platform else []
    if machine_arch != arch:
        wanted.append(arch)
        found.append(machine_arch)
    if not wanted:
        return None
    problem = f"runtime build for {platform}/{arch} must run on {'/'.join(wanted)}"
    if image_platform:  # a job in the wrong image: its job definition is wrong, not the command
        return f"{problem} (this is the builder image of {image_platform}, on {machine_arch})"
    return f"{problem} (this machine is {'/'.join(found)}): use --runner docker"


def check_placement(platform: str, arch: str, environ: Mapping[str, str] = os.environ) -> None:
    """UsageError (one line, exit 2) unless a runtime build for platform/arch may run here."""
    from buildfarm.runners.host import host_arch, host_platform_id  # what this machine is

    image_platform = environ.get(IMAGE_PLATFORM_ENV) or None
    host_platform = None if image_platform else host_platform_id(load_registry())
    problem = placement_problem(
        platform, arch, image_platform=image_platform, host_platform=host_platform, machine_arch=host_arch()
    )
    if problem:
        raise UsageError(problem)


def choose_python(request: RuntimeRequest) -> PythonBuild | None:
    """The store's newest published Python for the cell (UsageError if none), or None for a
    --python-tarball (read when the build starts)."""
    if request.python_tarball is not None:
        return None
    return select_python(request.store, request.definition.python, request.platform, request.arch)


def _python(request: RuntimeRequest, chosen: PythonBuild | None, work: Path) -> tuple[PythonBuild, Path]:
    tarball = work / "python.tar.gz"
    if chosen is None:
        assert request.python_tarball is not None
        return local_tarball(request.python_tarball, tarball), tarball
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
        # Publishing in a farm holds the build to the execution that claimed it.
        **({"execution_id": request.execution_id} if request.execution_id else {}),
    }


def assemble(
    request: RuntimeRequest, chosen: PythonBuild | None, uv: str, work: Path
) -> tuple[steps.Tree, dict[str, Any]]:
    """The self-tested, relocated tree and its manifest (without build number and artifacts)."""
    python, tarball = _python(request, chosen, work)
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
    if (
        found != cell
        or manifest.get("build") != request.build
        or (request.execution_id and manifest.get("execution_id") != request.execution_id)
    ):
        raise RuntimeBuildError(f"{where}/{MANIFEST_FILE} is not this build's; builds are never overwritten")
    return directory, manifest


def build_runtime(request: RuntimeRequest) -> tuple[str, dict[str, Any]]:
    """Build and publish one runtime cell: (its store directory, its manifest). At a claimed
    build number an earlier attempt completed, that attempt's (nothing is rebuilt)."""
    check_cell(request)
    earlier = earlier_attempt(request)
    if earlier is not None:
        return earlier
    # What the request names is checked first (a machine-independent answer), then where it runs.
    chosen = choose_python(request)
    if request.python_tarball is not None:  # before uv's cache is made (in the store's runtimes/)
        check_local_tarball(request.python_tarball)
    check_placement(request.platform, request.arch)
    uv = find_uv()
    # Beside an S3 store of a farm that shares uv's cache (off by default: uv_cache says why), a
    # fresh job's cache comes from the store and goes back to it after; else it starts empty.
    shared = uv_cache.shared(request.store)
    before = uv_cache.prepare(request.store, request.platform, request.arch, request.cache, shared=shared)
    with tempfile.TemporaryDirectory(prefix="buildfarm-runtime-") as temp:
        work = Path(temp)
        _, manifest = assemble(request, chosen, uv, work)
        directory = publish(request.store, work / "root", manifest, work, request.build)
    if before is not None:
        uv_cache.save(request.store, request.platform, request.arch, request.cache, before)
    return directory, manifest
