"""Builder images: the container each cell is built in, on Batch and by the docker runner.

One definition of how an image is built (the family's Dockerfile, the build context that
stage_context makes: builder_image/ plus the buildfarm wheel in wheels/, build_args), read by
the CDK asset (infra/builder_images.py), `buildfarm images build` and the docker runner alike.
The wheel serves runtime jobs (`buildfarm runtime build ...` as the image's command: the
driver installs it into a farm-built Python, builder_image/driver/runtime_job.py); it is built
from the source checkout with `uv build`, and beside it go its dependencies as installed here,
pinned with their wheels' sha256 (pinned_requirements), which the job installs hash-checked.
The image's tag covers the context, the wheel's sources, the pins, the base image's content id
and the local CAs passed in, so none of them changing leaves a stale image in use. Engines that
cannot pull from Docker Hub get their base image from a debootstrap root (import_base). Engines
started without a bridge (`dockerd --bridge=none`) build and run with the host's network;
others with their default.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import tomllib
import urllib.request
from collections.abc import Callable
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import IO

from packaging.requirements import Requirement
from packaging.tags import Tag
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import Version

from buildfarm import roots
from buildfarm.lambda_layer.tags import Target
from buildfarm.platforms import ARCHES, DOCKER_PLATFORM, Platform, Registry, builder_image_dir
from buildfarm.scratch import process_directory


class ImageError(Exception):
    """An image could not be built or imported; the message names the image and the step."""


# The unprivileged user every Batch job runs as (the job definitions' `user`). Batch runs an
# ECS-on-EC2 job in the instance's network namespace (host mode), where no hop limit keeps it
# from the instance metadata service; the launch template's firewall rule refuses that service
# to every user but root (infra/batch.py), so no job can take the instance's role. The images
# create this user (build_args) and keep no setuid program to regain root with.
JOB_UID = 10001
JOB_USER = f"{JOB_UID}:{JOB_UID}"


def build_args(platform: Platform) -> dict[str, str]:
    """The Dockerfile's arguments for a platform: its base image, its registry id and the
    jobs' user id (JOB_UID)."""
    return {"BASE_IMAGE": platform.base_image, "PLATFORM": platform.id, "JOB_UID": str(JOB_UID)}


LOCAL_CA_DIR = Path("/usr/local/share/ca-certificates")


def local_ca_certificates(directory: Path | None = None) -> str:
    """The CAs this machine added to its trust store (PEM; default LOCAL_CA_DIR), for the
    image's pip and downloads behind a TLS-inspecting proxy; "" on a machine that added none."""
    directory = directory or LOCAL_CA_DIR
    if not directory.is_dir():
        return ""
    pems = [path.read_text().strip() for path in sorted(directory.glob("*.crt"))]
    return "\n".join(pem for pem in pems if "BEGIN CERTIFICATE" in pem)


def _copied_from_context(dockerfile: Path, context: Path) -> set[Path]:
    """The context files a Dockerfile's COPY lines take (not those from another stage)."""
    copied: set[Path] = set()
    for line in dockerfile.read_text().splitlines():
        words = line.split()
        if not words or words[0] != "COPY" or any(word.startswith("--from") for word in words):
            continue
        for pattern in (word for word in words[1:-1] if not word.startswith("--")):
            for match in context.glob(pattern.rstrip("/")):
                found = [match] if match.is_file() else match.rglob("*")
                copied.update(p for p in found if p.is_file() and "__pycache__" not in p.parts)
    return copied


def context_files(registry: Registry, platform_id: str) -> list[Path]:
    """What the image is made of: the family's Dockerfile and what its COPY lines take from
    builder_image/ (the driver, the registry)."""
    context = builder_image_dir()
    dockerfile = context / registry.family_of(platform_id).dockerfile
    return [dockerfile, *sorted(_copied_from_context(dockerfile, context))]


WHEELS_DIR = "wheels"  # in the staged context: the buildfarm wheel and REQUIREMENTS_FILE (COPY wheels/...)
_NOT_SOURCES = ("__pycache__", "*.pyc", "*.pyo")  # what _is_source leaves out


def source_checkout() -> Path:
    """The repository the buildfarm wheel is built from; ImageError outside a checkout (an
    installed buildfarm carries builder_image/ but not the sources of its own wheel)."""
    repository = builder_image_dir().parent
    if not (repository / "pyproject.toml").is_file():
        raise ImageError(f"builder images are built from a source checkout; {repository} is not one")
    return repository


def _is_source(path: Path) -> bool:
    return path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc", ".pyo")


def wheel_sources(repository: Path) -> list[Path]:
    """What the buildfarm wheel is made of, as pyproject.toml states it: pyproject.toml, the
    readme (the wheel's METADATA) and the trees of the wheel target's packages and force-include."""
    project = tomllib.loads((repository / "pyproject.toml").read_text())
    target = project["tool"]["hatch"]["build"]["targets"]["wheel"]
    files = {repository / "pyproject.toml", repository / project["project"]["readme"]}
    for tree in (*target["packages"], *target.get("force-include", {})):
        files.update(path for path in (repository / tree).rglob("*") if _is_source(path))
    return sorted(files)


def _digest(context_paths: list[Path]) -> str:
    """sha256 over the context's files and the wheel's sources, each named by its path."""
    context, repository = builder_image_dir(), source_checkout()
    digest = hashlib.sha256()
    for path in context_paths:
        digest.update(path.relative_to(context).as_posix().encode() + b"\0" + path.read_bytes())
    for path in wheel_sources(repository):
        name = path.relative_to(repository).as_posix()
        digest.update(b"wheel:" + name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def image_tag(registry: Registry, platform_id: str, arch: str) -> str:
    """buildfarm-builder:<platform>-<arch>-<digest>: a changed driver, buildfarm package, base
    image (a re-run import-base or a newer pull under the same name), CA bundle or pinned
    dependency is a new image. ImageError if the base image is not here (its id is unknown)."""
    digest = hashlib.sha256(_digest(context_files(registry, platform_id)).encode())
    # The base's content id, not its name: import-base re-imports under the same name.
    digest.update(b"\0base:" + image_id(registry.get(platform_id).base_image).encode())
    digest.update(b"\0cas:" + local_ca_certificates().encode())  # the EXTRA_CA_CERTS build-arg
    pins = "".join(f"{name}=={version}\n" for name, version in sorted(pinned_closure().items()))
    digest.update(b"\0pins:" + pins.encode())  # what wheels/requirements.txt pins
    return f"buildfarm-builder:{platform_id}-{arch}-{digest.hexdigest()[:12]}"


REQUIREMENTS_FILE = "requirements.txt"  # in wheels/: the wheel's dependencies, pinned and hashed
SIMPLE_INDEX = "https://pypi.org/simple"  # where the image's pip gets them (PEP 691 JSON)
INDEX_CACHE_DIR = Path.home() / ".cache" / "buildfarm" / "index"  # _wheels_of
TOOL_SERIES = tuple(f"3.{minor}" for minor in range(11, 30))  # what runtime_job may pick (>= 3.11)
TOOL_GLIBC = "2.28"  # rhel-8's, the oldest of the registry's platforms: wheels up to its manylinux
TOOL_SERIES_HEADER = "# tool-python:"  # runtime_job reads the series the pins have wheels for
_LINUX_CPYTHON = {
    "os_name": "posix",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
}


def _installed(name: str) -> tuple[str, list[str]] | None:
    """(version, Requires-Dist) of the distribution installed here, None if there is none."""
    try:
        distribution = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return None
    return distribution.version, distribution.requires or []


Installed = Callable[[str], tuple[str, list[str]] | None]
Pins = dict[str, str]  # canonical name -> version


def _closure(dependencies: list[str], series: str, installed: Installed = _installed) -> Pins | None:
    """name -> the version installed here of every distribution `dependencies` need on a Linux
    CPython `series` (extras and markers followed); None if one is not installed here."""
    environment = {**_LINUX_CPYTHON, "python_version": series, "python_full_version": f"{series}.0"}
    pending = [(Requirement(line), {""}) for line in dependencies]
    extras: dict[str, set[str]] = {}
    versions: dict[str, str] = {}
    while pending:
        requirement, wanted_by = pending.pop()
        marker = requirement.marker
        if marker and not any(marker.evaluate({**environment, "extra": e}) for e in wanted_by):
            continue
        name = canonicalize_name(requirement.name)
        if name in extras and set(requirement.extras) <= extras[name]:
            continue
        extras.setdefault(name, set()).update(requirement.extras)
        if (found := installed(name)) is None:
            return None
        version, requires = found
        if not requirement.specifier.contains(version, prereleases=True):
            raise ImageError(f"{name} {version} is installed here, but {requirement} is needed")
        versions[name] = version
        wanted = extras[name] | {""}
        pending += [(Requirement(line), wanted) for line in requires]
    return versions


def _closures() -> dict[str, dict[str, str]]:
    """Per tool series, the closure of the wheel's dependencies as installed here (the series
    whose closure needs something not installed here are left out: nothing to pin it to)."""
    project = tomllib.loads((source_checkout() / "pyproject.toml").read_text())
    installed = cache(_installed)  # one metadata scan per distribution, not per series
    dependencies = project["project"]["dependencies"]
    found = {series: _closure(dependencies, series, installed) for series in TOOL_SERIES}
    return {series: closure for series, closure in found.items() if closure is not None}


def pinned_closure(closures: dict[str, dict[str, str]] | None = None) -> dict[str, str]:
    """name -> version of everything wheels/requirements.txt pins (any tool series)."""
    found = _closures() if closures is None else closures
    return {name: version for closure in found.values() for name, version in closure.items()}


def _index_files(name: str) -> list[tuple[str, str]]:
    """(file name, sha256) of each file of `name` on the index (PEP 691 JSON, what pip reads)."""
    url = f"{SIMPLE_INDEX}/{name}/"
    accept = {"Accept": "application/vnd.pypi.simple.v1+json"}
    request = urllib.request.Request(url, headers=accept)  # noqa: S310 - a constant https URL
    try:
        with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310 - a constant https URL
            files = json.load(response)["files"]
        return [(file["filename"], file["hashes"]["sha256"]) for file in files if "sha256" in file["hashes"]]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ImageError(f"pinning the buildfarm wheel's dependencies: {url}: {error}") from None


@cache
def _tool_tags(series: str, arch: str) -> frozenset[Tag]:
    return Target(series, arch, TOOL_GLIBC).tags


def _wheels_of(name: str, version: str) -> list[tuple[str, str]]:
    """(file name, sha256) of each wheel of name==version on the index, kept on disk once
    found: a release's files are immutable on PyPI, and every CDK synthesis stages a context,
    so only the first needs the index (and a later one gives the same pins)."""
    index = hashlib.sha256(SIMPLE_INDEX.encode()).hexdigest()[:12]
    kept = INDEX_CACHE_DIR / index / f"{canonicalize_name(name)}-{version}.json"
    with contextlib.suppress(OSError, ValueError):
        return [(str(filename), str(sha256)) for filename, sha256 in json.loads(kept.read_text())]
    wheels = []
    for filename, sha256 in _index_files(name):
        with contextlib.suppress(InvalidWheelFilename):
            if parse_wheel_filename(filename)[1] == Version(version):
                wheels.append((filename, sha256))
    if wheels:
        with contextlib.suppress(OSError):
            kept.parent.mkdir(parents=True, exist_ok=True)
            temp = kept.with_name(f".{kept.name}.{os.getpid()}")
            temp.write_text(json.dumps(wheels))
            temp.replace(kept)
    return wheels


def _linux_wheels(name: str, version: str) -> tuple[list[str], set[str]]:
    """The sha256 of each wheel of name==version that some tool Python can install, and the
    tool series that can install one on every arch (an image is built for each of ARCHES).
    Never an sdist: a job builds nothing."""
    hashes: set[str] = set()
    covered: dict[str, set[str]] = {arch: set() for arch in ARCHES}
    for filename, sha256 in _wheels_of(name, version):
        tags = parse_wheel_filename(filename)[3]
        for series in TOOL_SERIES:
            for arch in (arch for arch in ARCHES if tags & _tool_tags(series, arch)):
                covered[arch].add(series)
                hashes.add(sha256)
    return sorted(hashes), set.intersection(*covered.values())


def pinned_requirements() -> str:
    """wheels/requirements.txt: the buildfarm wheel's dependency closure at the versions
    installed here, each with the sha256 of its wheels on the index, and (TOOL_SERIES_HEADER)
    the tool series every pin of whose closure has a wheel for. ImageError if none has."""
    closures = _closures()
    lines, covered = [], {}
    for name, version in sorted(pinned_closure(closures).items()):
        hashes, covered[name] = _linux_wheels(name, version)
        if not hashes:
            raise ImageError(f"{name} {version}: no wheel on {SIMPLE_INDEX} for a Linux CPython >= 3.11")
        lines.append(" \\\n".join([f"{name}=={version}", *(f"    --hash=sha256:{h}" for h in hashes)]))
    series = [s for s, closure in closures.items() if all(s in covered[name] for name in closure)]
    if not series:
        raise ImageError("no CPython >= 3.11 has wheels of every dependency of the buildfarm wheel")
    header = [
        "# The buildfarm wheel's dependencies as installed where the image was built, each with",
        "# its wheels' sha256: pip install --require-hashes --no-deps --only-binary=:all:",
        f"{TOOL_SERIES_HEADER} {' '.join(series)}",
    ]
    return "\n".join([*header, *lines]) + "\n"


def build_wheel(repository: Path, destination: Path) -> Path:
    """`uv build --wheel` of the checkout into destination (hatchling makes the same bytes
    from the same sources); returns the wheel. ImageError with uv's last line if it fails."""
    from buildfarm.runtimes.runtime_build import find_uv  # the one way to find uv

    destination.mkdir(parents=True, exist_ok=True)
    argv = [find_uv(), "build", "--wheel", "--no-config", "--quiet", "--out-dir", str(destination)]
    result = subprocess.run([*argv, str(repository)], capture_output=True, text=True, check=False)
    wheels = sorted(destination.glob("*.whl"))
    if result.returncode != 0 or len(wheels) != 1:
        lines = [line for line in (result.stderr + result.stdout).splitlines() if line.strip()]
        raise ImageError(f"building the buildfarm wheel failed: {lines[-1] if lines else len(wheels)}")
    return wheels[0]


def stage_context(destination: Path) -> Path:
    """The images' build context in destination: builder_image/ (without bytecode), and in
    wheels/ the buildfarm wheel and its pinned, hashed dependencies. Returns destination."""
    repository = source_checkout()
    shutil.copytree(
        builder_image_dir(), destination, ignore=shutil.ignore_patterns(*_NOT_SOURCES), dirs_exist_ok=True
    )
    build_wheel(repository, destination / WHEELS_DIR)
    # Pinned and hashed beside the wheel: a runtime job installs exactly these (runtime_job.py).
    (destination / WHEELS_DIR / REQUIREMENTS_FILE).write_text(pinned_requirements())
    return destination


def staged_context() -> Path:
    """A context staged for the sources as they are, made once per process and sources (the
    CDK app stages every platform's asset from one); removed when the process exits."""
    context = builder_image_dir()
    return _staged_for(_digest(sorted(path for path in context.rglob("*") if _is_source(path))))


@cache
def _staged_for(digest: str) -> Path:
    return stage_context(process_directory(f"buildfarm-image-{digest[:12]}-"))


def _docker(*argv: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *argv], capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]


def engine_network() -> str:
    """ "host" when the engine has no bridge network (dockerd --bridge=none), else "default"."""
    return "default" if _docker("network", "inspect", "bridge").returncode == 0 else "host"


def image_exists(reference: str) -> bool:
    return _docker("image", "inspect", reference).returncode == 0


def image_id(reference: str) -> str:
    """The image's content id (sha256:...), what a local manifest records as its builder image."""
    result = _docker("image", "inspect", "--format", "{{.Id}}", reference)
    if result.returncode != 0:
        raise ImageError(f"no image {reference}: {result.stderr.strip()}")
    return result.stdout.strip()


def _ensure_base(platform: Platform) -> None:
    """The platform's base image is here (pulled if it can be); ImageError saying how to make it."""
    if image_exists(platform.base_image):
        return
    how = (
        f"`buildfarm images import-base --platform {platform.id}` makes it from a debootstrap root"
        if platform.codename and platform.family == "deb"
        else "pull it where a registry is reachable"
    )
    if _docker("pull", platform.base_image).returncode != 0:
        raise ImageError(f"base image {platform.base_image} of {platform.id} is not here; {how}")


def build_image(
    registry: Registry, platform_id: str, arch: str, output: IO[str], *, rebuild: bool = False
) -> str:
    """Build (unless present) the builder image of platform x arch; returns its tag."""
    platform = registry.get(platform_id)
    _ensure_base(platform)  # first: the tag covers the base image's id
    tag = image_tag(registry, platform_id, arch)
    if image_exists(tag) and not rebuild:
        return tag
    argv = ["docker", "build", "--network", engine_network(), "--platform", DOCKER_PLATFORM[arch]]
    arguments = build_args(platform)
    if extra_cas := local_ca_certificates():
        arguments["EXTRA_CA_CERTS"] = extra_cas
    for name, value in arguments.items():
        argv += ["--build-arg", f"{name}={value}"]
    output.write(f"images: building {tag} from {platform.base_image}\n")
    output.flush()
    started = int(time.time())
    with tempfile.TemporaryDirectory(prefix="buildfarm-image-") as scratch:
        context = stage_context(Path(scratch) / "context")
        argv += ["-f", str(context / registry.family_of(platform_id).dockerfile), "-t", tag, str(context)]
        result = subprocess.run(argv, stdout=output, stderr=subprocess.STDOUT, check=False)
    if result.returncode != 0:
        raise ImageError(f"docker build of {tag} failed (exit {result.returncode})")
    _remove_older(tag, platform_id, started)
    return tag


def _remove_older(tag: str, platform_id: str, started: int) -> None:
    """Remove this platform x arch's images of earlier drivers (about 1 GB each; the layers they
    share with the new one stay), and the platform's package-list stages (Dockerfile.deb's
    throwaway first stage, labelled buildfarm.packages) left by builds before this one."""
    repository, _, name = tag.partition(":")
    prefix = name.rsplit("-", 1)[0] + "-"
    listed = _docker("images", "--format", "{{.Tag}}", repository)
    for other in listed.stdout.split():
        if other.startswith(prefix) and other != name:
            _docker("rmi", f"{repository}:{other}")
    _docker(
        "image", "prune", "--force",
        "--filter", f"label=buildfarm.packages={platform_id}", "--filter", f"until={started}",
    )  # fmt: skip


def import_base(registry: Registry, platform_id: str, arch: str, output: IO[str]) -> str:
    """Make the platform's base image (e.g. debian:bookworm) from a debootstrap root: for
    engines that cannot pull images. Returns the image reference."""
    platform = registry.get(platform_id)
    if platform.family != "deb" or not platform.codename:
        raise ImageError(f"{platform_id}: only Debian and Ubuntu bases can be made with debootstrap")
    if problem := roots.debootstrap_problem(platform.codename):
        raise ImageError(f"{platform_id}: {problem}")
    with tempfile.TemporaryDirectory(prefix="buildfarm-base-") as scratch:
        root = Path(scratch) / "root"
        output.write(f"images: debootstrap {platform.codename} ({arch}) for {platform.base_image}\n")
        output.flush()
        try:
            roots.debootstrap(platform.codename, root, roots.mirror_for(platform), arch)
        except roots.RootError as error:
            raise ImageError(f"{platform_id}: {error}") from None
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        imported = subprocess.run(
            ["docker", "import", "--platform", DOCKER_PLATFORM[arch], "-", platform.base_image],
            stdin=tar.stdout,
            capture_output=True,
            text=True,
            check=False,
        )
        tar_status = tar.wait()
    if tar_status != 0 or imported.returncode != 0:
        raise ImageError(f"docker import of {platform.base_image} failed: {imported.stderr.strip()}")
    return platform.base_image
