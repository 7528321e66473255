"""A tiny in-tree PEP 517 build backend, shipped inside the test sdists (pyproject's
backend-path), so pip builds them with no index and no setuptools: offline and hermetic.

Each sdist has lf_build.json: {"name", "version", "module": {file: text}, "ext": null or
{"name", "source", "optional_without_compiler"}}. An extension compiles with $CC (else cc), as
distutils does; with "optional_without_compiler", a build where no C compiler works leaves it
out (a pure wheel), while a compiler that fails on the source fails the build."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shlex
import subprocess
import sys
import sysconfig
import tempfile
import zipfile
from pathlib import Path


def _config() -> dict:
    return json.loads(Path("lf_build.json").read_text())


def _dist_info_files(name: str, version: str, tag: str, requires: tuple[str, ...] = ()) -> dict[str, bytes]:
    dist = f"{name.replace('-', '_')}-{version}.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    metadata += "".join(f"Requires-Dist: {requirement}\n" for requirement in requires)
    purelib = "true" if "none-any" in tag else "false"
    wheel = f"Wheel-Version: 1.0\nGenerator: lf_backend\nRoot-Is-Purelib: {purelib}\nTag: {tag}\n"
    return {f"{dist}/METADATA": metadata.encode(), f"{dist}/WHEEL": wheel.encode()}


def write_wheel(
    directory: str, name: str, version: str, tag: str, files: dict[str, bytes], requires: tuple[str, ...] = ()
) -> str:
    """A wheel of `files` (archive path -> content) with its dist-info (Requires-Dist: each of
    `requires`) and a correct RECORD."""
    files = {**files, **_dist_info_files(name, version, tag, requires)}
    dist = f"{name.replace('-', '_')}-{version}.dist-info"
    lines = []
    for path, content in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(content).digest()).rstrip(b"=").decode()
        lines.append(f"{path},sha256={digest},{len(content)}")
    files[f"{dist}/RECORD"] = ("\n".join([*lines, f"{dist}/RECORD,,"]) + "\n").encode()
    filename = f"{name.replace('-', '_')}-{version}-{tag}.whl"
    with zipfile.ZipFile(Path(directory) / filename, "w") as archive:
        for path, content in files.items():
            archive.writestr(
                zipfile.ZipInfo(path, (2020, 1, 1, 0, 0, 0)), content
            )  # the same bytes each time
    return filename


def _compiler_works(cc: list[str]) -> bool:
    try:
        return subprocess.run([*cc, "--version"], capture_output=True, check=False).returncode == 0
    except OSError:
        return False


def _compile(ext: dict, out_dir: Path) -> bytes | None:
    """The extension's shared object, or None when it is optional and no compiler works."""
    cc = shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")
    if ext.get("optional_without_compiler") and not _compiler_works(cc):
        print("no working C compiler: building without the speedups", file=sys.stderr)
        return None
    source = out_dir / f"{ext['name']}.c"
    source.write_text(ext["source"])
    target = out_dir / f"{ext['name']}.so"
    include = sysconfig.get_paths()["include"]
    command = [*cc, "-shared", "-fPIC", f"-I{include}", str(source), "-o", str(target)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        print(result.stderr, file=sys.stderr)
        raise SystemExit(f"error: compiling {ext['name']} failed")
    return target.read_bytes()


def _platform_tag() -> str:
    version = f"cp{sys.version_info.major}{sys.version_info.minor}"
    platform = sysconfig.get_platform().replace("-", "_").replace(".", "_")
    return f"{version}-{version}-{platform}"


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    config = _config()
    files = {path: text.encode() for path, text in config["module"].items()}
    tag = "py3-none-any"
    if config.get("ext"):
        with tempfile.TemporaryDirectory() as scratch:
            shared = _compile(config["ext"], Path(scratch))
        if shared is not None:
            suffix = sysconfig.get_config_var("EXT_SUFFIX")
            files[f"{config['ext']['name']}{suffix}"] = shared
            tag = _platform_tag()
    return write_wheel(wheel_directory, config["name"], config["version"], tag, files)


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    config = _config()
    for path, content in _dist_info_files(config["name"], config["version"], "py3-none-any").items():
        target = Path(metadata_directory) / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    return f"{config['name'].replace('-', '_')}-{config['version']}.dist-info"


def get_requires_for_build_wheel(config_settings=None):
    return []
