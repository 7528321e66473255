"""Builder images: the container each cell is built in, on Batch and by the docker runner.

One definition of how an image is built (the family's Dockerfile, the build context that
stage_context makes: builder_image/ plus the buildfarm wheel in wheels/, build_args), read by
the CDK asset (infra/builder_images.py), `buildfarm images build` and the docker runner alike.
The wheel serves runtime jobs (`buildfarm runtime build ...` as the image's command: the
driver installs it into a farm-built Python, builder_image/driver/runtime_job.py); it is built
from the source checkout with `uv build`, and the image's tag covers its sources. Engines that
cannot pull from Docker Hub get their base image from a debootstrap root (import_base). Engines
started without a bridge (`dockerd --bridge=none`) build and run with the host's network;
others with their default.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
import time
import tomllib
from functools import cache
from pathlib import Path
from typing import IO

from buildfarm import roots
from buildfarm.platforms import DOCKER_PLATFORM, Platform, Registry, builder_image_dir


class ImageError(Exception):
    """An image could not be built or imported; the message names the image and the step."""


def build_args(platform: Platform) -> dict[str, str]:
    """The Dockerfile's arguments for a platform: its base image and its registry id."""
    return {"BASE_IMAGE": platform.base_image, "PLATFORM": platform.id}


LOCAL_CA_DIR = Path("/usr/local/share/ca-certificates")


def local_ca_certificates(directory: Path = LOCAL_CA_DIR) -> str:
    """The CAs this machine added to its trust store (PEM), for the image's pip and downloads
    behind a TLS-inspecting proxy; "" on a machine that added none."""
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


WHEELS_DIR = "wheels"  # in the staged context: the buildfarm wheel (the Dockerfiles COPY wheels/*.whl)
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
    """buildfarm-builder:<platform>-<arch>-<digest of the context and the wheel's sources>: a
    changed driver or buildfarm package is a new image."""
    return f"buildfarm-builder:{platform_id}-{arch}-{_digest(context_files(registry, platform_id))[:12]}"


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
    """The images' build context in destination: builder_image/ (without bytecode) and the
    buildfarm wheel in wheels/. Returns destination."""
    repository = source_checkout()
    shutil.copytree(
        builder_image_dir(), destination, ignore=shutil.ignore_patterns(*_NOT_SOURCES), dirs_exist_ok=True
    )
    build_wheel(repository, destination / WHEELS_DIR)
    return destination


def staged_context() -> Path:
    """A context staged for the sources as they are, made once per process and sources (the
    CDK app stages every platform's asset from one); left for the process's caller, as the
    Lambda bundle's staging directory is."""
    context = builder_image_dir()
    return _staged_for(_digest(sorted(path for path in context.rglob("*") if _is_source(path))))


@cache
def _staged_for(digest: str) -> Path:
    return stage_context(Path(tempfile.mkdtemp(prefix=f"buildfarm-image-{digest[:12]}-")))


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


def build_image(
    registry: Registry, platform_id: str, arch: str, output: IO[str], *, rebuild: bool = False
) -> str:
    """Build (unless present) the builder image of platform x arch; returns its tag."""
    platform = registry.get(platform_id)
    tag = image_tag(registry, platform_id, arch)
    if image_exists(tag) and not rebuild:
        return tag
    if not image_exists(platform.base_image):
        how = (
            f"`buildfarm images import-base --platform {platform_id}` makes it from a debootstrap root"
            if platform.codename and platform.family == "deb"
            else "pull it where a registry is reachable"
        )
        if _docker("pull", platform.base_image).returncode != 0:
            raise ImageError(f"base image {platform.base_image} of {platform_id} is not here; {how}")
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
