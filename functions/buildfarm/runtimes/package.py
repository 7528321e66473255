"""Package a relocated runtime tree and publish it: a tarball and the platform's package, a
manifest (manifest.schema.json), create-only under
runtimes/<name>/<version>/<platform>/<arch>/<build>/ at the next free build number. SHA256SUMS
and its signature are the publish side's (runtimes.publish, buildfarm.attest), as for Python;
the manifest lists them under "attestations" (a runtime has no SBOM or provenance).

Both artifacts hold the tree at its prefix: the tarball is extracted with `tar -xzf FILE -C /`
(a venv runs where it was made), the .deb or .rpm installs it there and declares what its
binaries need, as the Python build's package does and with its code (builder_image/driver/
depends.py): the .deb's Depends from dpkg-shlibdeps, versioned (libssl3 (>= 3.0.0), so apt
does not install it where the bundled CPython's OpenSSL is missing or older), the .rpm's
Requires found by rpm; the tree's own libraries (libpython, a wheel's) neither, nor (the
.rpm) its own paths (a venv script's #!<prefix>/bin/python). A library that comes from no
package (dpkg-shlibdeps for the .deb; for the .rpm, no package in the rpm database provides
its soname) fails the build, naming the file that needs it.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import shutil
import sys
from importlib import resources
from pathlib import Path
from types import ModuleType
from typing import Any

from buildfarm.layout import MANIFEST_FILE
from buildfarm.models import Attestations
from buildfarm.platforms import DEB_ARCH, builder_image_dir, load_registry
from buildfarm.runtimes.build import RuntimeBuildError, run_step
from buildfarm.runtimes.keys import build_numbers, runtime_artifact_dir, runtime_cell_dir
from buildfarm.runtimes.rpm import make_rpm, rpm_file_name
from buildfarm.store import Store, StoreConflict

SCHEMA_VERSION = 1
MAX_NUMBER_RACES = 5
ASCII_DIGITS = frozenset("0123456789")
"""What Debian takes for a digit (str.isdigit would take '²' and '٣' too)."""


def deb_version(version: str, build: int) -> str:
    """Debian's version of a runtime build: an upstream part that starts with a digit."""
    upstream = version[1:] if version[:1] == "v" and version[1:2] in ASCII_DIGITS else version
    return f"{upstream if upstream[:1] in ASCII_DIGITS else '0+' + upstream}-{build}"


def package_name(name: str, version: str) -> str:
    """runtime-<name>-<version>: side by side, like python-<version>."""
    return f"runtime-{name}-{version}"


def file_names(name: str, version: str, platform: str, arch: str, build: int) -> dict[str, str]:
    return {
        "tarball": f"runtime-{name}-{version}-{platform}-{arch}.tar.gz",
        "deb": f"{package_name(name, version)}_{deb_version(version, build)}_{DEB_ARCH[arch]}.deb",
        "rpm": rpm_file_name(package_name(name, version), version, build, arch),
    }


def make_tarball(root: Path, prefix: str, dest: Path) -> None:
    """The staging root's tree at its prefix, paths relative to / (owner root, sorted), for
    `tar -xzf FILE -C /`."""
    run_step(
        ["tar", "--sort=name", "--owner=0", "--group=0", "--numeric-owner", "-czf", dest,
         "-C", root, prefix.lstrip("/").split("/")[0]],
        "making the tarball",
    )  # fmt: skip


def driver_module(name: str) -> ModuleType:
    """A module of builder_image/driver/ ("depends", "packages"), imported as build.py imports
    it (the driver and sbom_facts of builder_image/ on sys.path only while they load): the one
    copy of the code that declares a package's dependencies and sets its files' modes."""
    directory = str(builder_image_dir())
    sys.path.insert(0, directory)
    try:
        module = importlib.import_module(f"driver.{name}")
    finally:
        sys.path.remove(directory)
    if not Path(module.__file__ or "").resolve().is_relative_to(Path(directory).resolve()):
        raise RuntimeBuildError(f"the module driver is {module.__file__}, not {directory}'s")
    return module


def normalise_modes(root: Path) -> None:
    """Debian policy's modes on the staging root, for the tarball, the .deb and the .rpm alike,
    whatever umask the build ran under (077 made the tarball's opt/ 0700, and `tar -xzf FILE -C
    /` then closed /opt): the Python build's packages.normalise_modes."""
    driver_module("packages").normalise_modes(str(root))


def deb_depends(root: Path, prefix: str, package: str) -> list[str]:
    """The Depends of the .deb of the staging root (DEBIAN/ made already: it marks root as the
    package's tree): what dpkg-shlibdeps finds its binaries need, versioned. A library not
    found or from no package: RuntimeBuildError naming the file, as installed."""
    depends = driver_module("depends")
    try:
        return depends.deb_depends(io.StringIO(), None, str(root), prefix, package)
    except depends.BuildError as error:
        raise RuntimeBuildError(f"making the .deb: {error.reason}") from None


def rpm_dependency_filters(root: Path, prefix: str, rpm_dbpath: str | None = None) -> str:
    """The spec's %global lines that keep the tree's own libraries and paths out of rpm's
    automatic Requires and everything in the prefix out of its Provides, once every other
    library its binaries need is provided by a package of the rpm database (rpm_dbpath; None:
    the platform's own). A library no package provides: RuntimeBuildError naming the file, as
    installed, and the library."""
    depends = driver_module("depends")
    tree = str(root / prefix.lstrip("/"))
    try:
        libraries = depends.check_rpm_libraries(io.StringIO(), None, tree, prefix, rpm_dbpath)
        return "\n".join(depends.rpm_dependency_macros(prefix, libraries))
    except depends.BuildError as error:
        raise RuntimeBuildError(f"making the .rpm: {error.reason}") from None


def make_deb(root: Path, prefix: str, control: dict[str, str], dest: Path) -> None:
    """dpkg-deb --build of the staging root (the tree at its prefix) with a control file, its
    Depends what the binaries need (deb_depends)."""
    tree = root / prefix.lstrip("/")
    size_kib = sum(p.stat().st_size for p in tree.rglob("*") if p.is_file() and not p.is_symlink()) // 1024
    debian = root / "DEBIAN"
    debian.mkdir()
    try:
        depends = deb_depends(root, prefix, control["Package"])
        fields = {**control, **({"Depends": ", ".join(depends)} if depends else {})}
        fields["Installed-Size"] = str(size_kib)
        control_file = debian / "control"
        control_file.write_text("".join(f"{key}: {value}\n" for key, value in fields.items()))
        debian.chmod(0o755)  # dpkg-deb refuses a control directory the umask left 0700
        control_file.chmod(0o644)
        run_step(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", root, dest], "making the .deb")
    finally:
        shutil.rmtree(debian)


def deb_control(manifest: dict[str, Any], platform: str, arch: str) -> dict[str, str]:
    runtime, python = manifest["runtime"], manifest["python"]
    packages = ", ".join(f"{p['name']} {p['version']}" for p in manifest["packages"])
    return {
        "Package": package_name(runtime["name"], runtime["version"]),
        "Version": deb_version(runtime["version"], manifest["build"]),
        "Architecture": DEB_ARCH[arch],
        "Maintainer": "Python Build Farm <python-build-farm@example.org>",
        "Section": "python",
        "Priority": "optional",
        "Description": f"{runtime['name']} {runtime['version']} runtime in {runtime['prefix']}\n"
        f" CPython {python['version']} and a venv with: {packages}.",
    }


def rpm_fields(
    manifest: dict[str, Any], platform: str, arch: str, root: Path, rpm_dbpath: str | None = None
) -> dict[str, str]:
    control = deb_control(manifest, platform, arch)
    summary, _, description = control["Description"].partition("\n ")
    return {
        "name": control["Package"],
        "version": manifest["runtime"]["version"],
        "release": str(manifest["build"]),
        "arch": arch,
        "summary": summary,
        "description": description,
        "filters": rpm_dependency_filters(root, manifest["runtime"]["prefix"], rpm_dbpath),
    }


def describe(path: Path, kind: str) -> dict[str, Any]:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
    return {"type": kind, "file": path.name, "sha256": digest.hexdigest(), "size": path.stat().st_size}


def package_format(platform: str) -> str:
    return load_registry().family_of(platform).package_format


def make_artifacts(
    root: Path, manifest: dict[str, Any], work: Path, rpm_dbpath: str | None = None
) -> list[Path]:
    """The tarball and the platform's package of the staging root for the manifest's build
    number; rpm_dbpath: the rpm database that says which libraries an .rpm's binaries may need
    (None: the platform's own, as in its builder image)."""
    runtime = manifest["runtime"]
    platform, arch = manifest["platform"], manifest["arch"]
    names = file_names(runtime["name"], runtime["version"], platform, arch, manifest["build"])
    out = work / f"out-{manifest['build']}"
    out.mkdir()
    normalise_modes(root)  # one set of modes for both artifacts, whatever the umask
    make_tarball(root, runtime["prefix"], out / names["tarball"])
    files = [out / names["tarball"]]
    kind = package_format(platform)
    if kind == "deb":
        make_deb(root, runtime["prefix"], deb_control(manifest, platform, arch), out / names["deb"])
    else:
        fields = rpm_fields(manifest, platform, arch, root, rpm_dbpath)
        make_rpm(root, runtime["prefix"], fields, work, out / names["rpm"])
    files.append(out / names[kind])
    return files


def manifest_schema() -> dict[str, Any]:
    return json.loads((resources.files("buildfarm.runtimes") / "manifest.schema.json").read_text())


def _publish_files(store: Store, directory: str, files: list[Path], manifest: dict[str, Any]) -> bool:
    """Artifacts, then manifest.json last, all create-only. The first put claims the build
    number: False if another build took it (nothing of ours was written)."""
    manifest_bytes = json.dumps(manifest, indent=2, sort_keys=True).encode() + b"\n"
    (first, *rest) = [*((path.name, path) for path in files), (MANIFEST_FILE, manifest_bytes)]
    for index, (name, content) in enumerate([first, *rest]):
        data = content.read_bytes() if isinstance(content, Path) else content
        try:
            store.put(f"{directory}/{name}", data, if_none_match=True)
        except StoreConflict:
            if index == 0:
                return False
            raise
    return True


def publish(store: Store, root: Path, manifest: dict[str, Any], work: Path, build: int | None = None) -> str:
    """Package and publish at the next free build number (a lost race takes the next one), or
    at `build` (the number a farm's claim gave; taken already: an error); returns the build's
    directory key."""
    runtime = manifest["runtime"]
    cell = (runtime["name"], runtime["version"], manifest["platform"], manifest["arch"])
    for _ in range(1 if build else MAX_NUMBER_RACES):
        manifest["build"] = (
            build or max(build_numbers(store.list_children(runtime_cell_dir(*cell))), default=0) + 1
        )
        files = make_artifacts(root, manifest, work)
        kinds = ("tarball", package_format(manifest["platform"]))
        manifest["artifacts"] = [describe(path, kind) for path, kind in zip(files, kinds, strict=False)]
        manifest["attestations"] = Attestations.checksums_only().model_dump(exclude_none=True)
        directory = runtime_artifact_dir(*cell, manifest["build"])
        if _publish_files(store, directory, files, manifest):
            return directory
    if build:
        raise RuntimeBuildError(f"{runtime_artifact_dir(*cell, build)} exists already; nothing published")
    raise RuntimeBuildError(f"could not claim a build number under {runtime_cell_dir(*cell)}")
