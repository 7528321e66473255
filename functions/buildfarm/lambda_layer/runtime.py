"""The provided.al2023 runtime layer: a published farm build's Python at python/ (so /opt/python
on Lambda, its site-packages the documented /opt/python/lib/pythonX.Y/site-packages), the
`bootstrap` Lambda runs at /opt/bootstrap, and awslambdaric installed by the dependency builder.

The Python comes from a farm build's tarball (a path or an http(s) URL). It must be published:
manifest.json beside it lists the tarball with the same sha256 and size."""

from __future__ import annotations

import json
import re
import shutil
import tarfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from buildfarm.errors import BuildfarmError, UsageError
from buildfarm.lambda_layer.deps import DepsResult, build_deps, install_wheels
from buildfarm.lambda_layer.package import sha256_of
from buildfarm.lambda_layer.tags import Target
from buildfarm.layout import MANIFEST_FILE

# The runtime interface client the bootstrap starts; its own dependencies resolve freely.
RUNTIME_REQUIREMENTS = ("awslambdaric==4.2.2",)
DOWNLOAD_TIMEOUT_SECONDS = 300
# The manifest's platform.glibc: "glibc-2.36" (models.Manifest), compared with the runtime's.
_GLIBC = re.compile(r"(glibc-)?(?P<version>[0-9]{1,2}\.[0-9]{1,3})")


@dataclass(frozen=True)
class PublishedPython:
    """A farm build's tarball, fetched and checked against its manifest."""

    source: str
    tarball: Path
    version: str
    platform: str
    arch: str
    glibc: str  # "2.36"

    @property
    def series(self) -> str:
        return ".".join(self.version.split(".")[:2])

    def as_json(self) -> dict:
        return {
            "source": self.source,
            "version": self.version,
            "platform": self.platform,
            "arch": self.arch,
            "glibc": self.glibc,
        }


def _fetch(url: str, dest: Path) -> None:
    try:
        # http(s) only: the caller checked the scheme.
        response = urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_SECONDS)  # noqa: S310
        with response, dest.open("wb") as out:
            shutil.copyfileobj(response, out)
    except urllib.error.HTTPError as error:
        raise UsageError(f"Python {url} is not published: HTTP {error.code}") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", None) or error
        raise UsageError(f"cannot fetch {url}: {reason}") from None


def _local_or_fetched(source: str, workdir: Path) -> tuple[Path, Path]:
    """(tarball, manifest) on disk for a path or an http(s) URL."""
    scheme = urllib.parse.urlsplit(source).scheme
    if scheme in ("http", "https"):
        name = Path(urllib.parse.urlsplit(source).path).name
        if not name.endswith(".tar.gz"):
            raise UsageError(f"{source} is not a farm build's tarball (python-*.tar.gz)")
        manifest, tarball = workdir / MANIFEST_FILE, workdir / name
        _fetch(urllib.parse.urljoin(source, MANIFEST_FILE), manifest)
        _fetch(source, tarball)
        return tarball, manifest
    if scheme:
        raise UsageError(f"Python {source}: only a path or an http(s) URL")
    tarball = Path(source)
    if not tarball.is_file():
        raise UsageError(f"Python tarball {source} does not exist")
    manifest = tarball.parent / MANIFEST_FILE
    if not manifest.is_file():
        raise UsageError(f"{source} is not a published farm build: no {MANIFEST_FILE} beside it")
    return tarball, manifest


def published_python(source: str, workdir: Path) -> PublishedPython:
    """The Python at `source`, refused unless its manifest lists it with this sha256 and size."""
    tarball, manifest_path = _local_or_fetched(source, workdir)
    try:
        manifest = json.loads(manifest_path.read_text())
        listed = [
            a for a in manifest["artifacts"] if a.get("file") == tarball.name and a.get("type") == "tarball"
        ]
        python, platform = manifest["python"], manifest["platform"]
        version, platform_id, arch = str(python["version"]), str(platform["id"]), str(platform["arch"])
        glibc = _glibc_version(platform.get("glibc"))
    except (ValueError, KeyError, TypeError, AttributeError):
        raise UsageError(f"{source}: {MANIFEST_FILE} beside it is not a farm build manifest") from None
    if not listed:
        raise UsageError(f"{source} is not a published farm build: {MANIFEST_FILE} does not list it")
    if listed[0].get("size") != tarball.stat().st_size or listed[0].get("sha256") != sha256_of(tarball):
        raise UsageError(f"{source} differs from the build's {MANIFEST_FILE} (sha256 or size)")
    return PublishedPython(source, tarball, version, platform_id, arch, glibc)


def _glibc_version(recorded: object) -> str:
    """ "2.36" from the manifest's "glibc-2.36" ("" when it records none); ValueError otherwise."""
    if recorded in (None, ""):
        return ""
    match = _GLIBC.fullmatch(recorded) if isinstance(recorded, str) else None
    if match is None:
        raise ValueError(f"glibc {recorded!r}")
    return match["version"]


def extract_python(python: PublishedPython, layer_dir: Path) -> Path:
    """Unpack the tarball (top-level python/) into layer_dir; its interpreter."""
    with tarfile.open(python.tarball) as archive:
        archive.extractall(layer_dir, filter="data")
    interpreter = layer_dir / "python" / "bin" / f"python{python.series}"
    if not interpreter.is_file():
        raise BuildfarmError(f"{python.source} has no python/bin/python{python.series}")
    return interpreter


def site_packages(layer_dir: Path, target: Target) -> Path:
    """The layer's python/lib/pythonX.Y/site-packages (AWS's documented layer path)."""
    return layer_dir / "python" / "lib" / f"python{target.python}" / "site-packages"


def write_bootstrap(layer_dir: Path) -> None:
    """The package's bootstrap script at the layer's root (/opt/bootstrap), executable."""
    bootstrap = layer_dir / "bootstrap"
    bootstrap.write_bytes(resources.files(__package__).joinpath("bootstrap").read_bytes())
    bootstrap.chmod(0o755)


def stage_runtime_layer(
    python: PublishedPython, target: Target, layer_dir: Path, workdir: Path, index_url: str | None = None
) -> DepsResult:
    """layer_dir = Python + bootstrap + awslambdaric (and its dependencies) for the target."""
    interpreter = extract_python(python, layer_dir)
    write_bootstrap(layer_dir)
    workdir.mkdir(parents=True, exist_ok=True)
    requirements = workdir / "runtime-requirements.txt"
    requirements.write_text("".join(line + "\n" for line in RUNTIME_REQUIREMENTS))
    result = build_deps(requirements, target, interpreter, workdir / "runtime-deps", index_url)
    if result.failed:
        names = ", ".join(f"{p.name} ({p.reason})" for p in result.failed)
        raise BuildfarmError(f"the runtime layer's packages could not be made: {names}")
    install_wheels(interpreter, result.wheels, target, site_packages(layer_dir, target))
    return result
