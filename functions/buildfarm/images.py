"""Builder images: the container each cell is built in, on Batch and by the docker runner.

One definition of how an image is built (the family's Dockerfile, builder_image/ as context,
build_args), read by the CDK asset (infra/builder_images.py), `buildfarm images build` and the
docker runner alike. Engines that cannot pull from Docker Hub get their base image from a
debootstrap root (import_base). Engines started without a bridge (`dockerd --bridge=none`)
build and run with the host's network; others with their default.
"""

from __future__ import annotations

import hashlib
import subprocess
import tempfile
import time
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


def image_tag(registry: Registry, platform_id: str, arch: str) -> str:
    """buildfarm-builder:<platform>-<arch>-<digest of the context>: a changed driver is a new image."""
    context = builder_image_dir()
    digest = hashlib.sha256()
    for path in context_files(registry, platform_id):
        digest.update(path.relative_to(context).as_posix().encode() + b"\0" + path.read_bytes())
    return f"buildfarm-builder:{platform_id}-{arch}-{digest.hexdigest()[:12]}"


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
    context = builder_image_dir()
    argv += ["-f", str(context / registry.family_of(platform_id).dockerfile), "-t", tag, str(context)]
    output.write(f"images: building {tag} from {platform.base_image}\n")
    output.flush()
    started = int(time.time())
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
