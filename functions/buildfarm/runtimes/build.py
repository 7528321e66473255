"""Assemble a runtime in a staging directory: the Python build extracted at <tree>/python, a venv
at <tree> (the prefix's content) with the locked requirements installed by uv in hash-checking
mode from a download cache, then relocated to the prefix.

The venv is made in the staging tree and relocated (pyvenv.cfg and the bin/python links name
the prefix afterwards): uv's --relocatable venvs give console scripts and activation scripts
that find their venv from where they are, so pyvenv.cfg's `home` is the only absolute path.
A venv names its base Python by absolute path, so the finished tree runs at its prefix.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from buildfarm.errors import BuildfarmError, UsageError
from buildfarm.runtimes.definitions import UV_EXPORT_OPTIONS, RuntimeDefinition

# uv's words for a lock whose hashes do not fit (uv 0.13): a download with another hash, a
# requirement without one, a dependency the lock does not pin.
# uv wraps long lines: any whitespace between the words.
HASH_MISMATCH = re.compile(r"Hash\s+mismatch\s+for\s+`([^`]+)`")
NO_HASH = re.compile(r"must\s+have\s+a\s+hash,\s+but\s+none\s+were\s+provided\s+for:\s+(\S+)")
UNPINNED = re.compile(r"no\s+trusted\s+hash\s+was\s+provided\s+for:\s+`([^`]+)`")


# uv's venv bookkeeping: a lock file, a gitignore of everything and a cache-directory tag
# (backup tools would skip an installed runtime).
UV_VENV_MARKERS = (".lock", ".gitignore", "CACHEDIR.TAG")


class RuntimeBuildError(BuildfarmError):
    """A runtime build failed (exit 1); the message says which step and why, in one line."""


@dataclass(frozen=True)
class Tree:
    """A runtime being assembled: `path` becomes `prefix`."""

    path: Path
    prefix: str

    @property
    def base_python(self) -> Path:
        return self.path / "python" / "bin" / "python3"

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    def site_packages(self, series: str) -> Path:
        return self.path / "lib" / f"python{series}" / "site-packages"


def run_step(argv: list[str | os.PathLike[str]], step: str, env: dict[str, str] | None = None) -> str:
    """Run one step (argv, never a shell); RuntimeBuildError with its last output line if it fails."""
    result = subprocess.run(
        [str(word) for word in argv],
        capture_output=True,
        text=True,
        errors="replace",
        env=None if env is None else {**os.environ, **env},
        stdin=subprocess.DEVNULL,
        check=False,
    )
    if result.returncode != 0:
        lines = [line for line in (result.stderr + result.stdout).splitlines() if line.strip()]
        raise RuntimeBuildError(
            f"{step} failed: {lines[-1].strip() if lines else f'exit {result.returncode}'}"
        )
    return result.stdout


def extract_python(tarball: Path, tree: Tree) -> str:
    """Extract the Python tarball (top-level python/) into the tree; return its version."""
    tree.path.mkdir(parents=True)
    tree.path.chmod(0o755)
    run_step(["tar", "-xzf", tarball, "-C", tree.path, "python/"], "extracting the Python tarball")
    if not tree.base_python.exists():
        raise RuntimeBuildError(f"{tarball.name} has no python/bin/python3")
    return run_step([tree.base_python, "-c", "import platform; print(platform.python_version())"],
                    "running the Python build").strip()  # fmt: skip


def create_venv(uv: str, tree: Tree) -> None:
    run_step(
        [uv, "venv", "--no-config", "--quiet", "--relocatable", "--allow-existing",
         "--python", tree.base_python, tree.path],
        "creating the venv",
    )  # fmt: skip


def requirements_file(uv: str, definition: RuntimeDefinition, work: Path) -> Path:
    """A requirements.txt with hashes for the lock: the file itself, or uv.lock exported by uv
    (its project directory holds pyproject.toml); a pylock.toml is installed as it is. A uv.lock
    gives the project's dependencies only: --no-default-groups leaves out every dependency group
    (uv's default takes `dev` and pyproject's [tool.uv] default-groups: a runtime ships no
    development tools). The options are in the lock's digest (RuntimeDefinition.lock_sha256)."""
    path = definition.requirements_path
    if definition.lock_kind != "uv.lock":
        return path
    exported = work / "requirements-from-uv-lock.txt"
    run_step(
        [uv, "export", "--no-config", "--quiet", *UV_EXPORT_OPTIONS, "--format", "requirements-txt",
         "--directory", path.parent, "--output-file", exported],
        f"exporting {definition.requirements}",
    )  # fmt: skip
    return exported


def hash_failure(output: str) -> str | None:
    """uv's refusal of the lock's hashes as one line naming the package, else None."""
    if match := HASH_MISMATCH.search(output):
        return f"hash mismatch for {match.group(1)}: the download does not have the lock's sha256"
    if match := NO_HASH.search(output):
        return f"no --hash for {match.group(1)} in the lock"
    if match := UNPINNED.search(output):
        return f"the lock has no hash for {match.group(1)} (a dependency missing from the lock?)"
    return None


def install_requirements(uv: str, tree: Tree, requirements: Path, cache: Path, kind: str) -> None:
    """uv pip install in hash-checking mode into the venv, from the cache (PyPI fills it)."""
    preview = ["--preview-features", "pylock"] if kind == "pylock.toml" else []  # uv 0.13: experimental
    argv = [
        uv, "pip", "install", "--no-config", "--quiet", *preview, "--python", tree.python,
        "--require-hashes", "--strict", "--link-mode", "copy", "--cache-dir", cache, "-r", requirements,
    ]  # fmt: skip
    result = subprocess.run(
        [str(w) for w in argv], capture_output=True, text=True, errors="replace", check=False
    )
    if result.returncode != 0:
        output = result.stderr + result.stdout
        if failure := hash_failure(output):
            raise UsageError(failure)
        lines = [line.strip() for line in output.splitlines() if line.strip()]
        raise RuntimeBuildError(f"installing the requirements failed: {' '.join(lines[:3])[:400]}")


def compile_bytecode(tree: Tree, series: str) -> None:
    """Byte-compile site-packages now, naming the prefix in the .pyc files (the prefix is not
    writable at run time)."""
    run_step(
        [tree.python, "-m", "compileall", "-q", "-f", "-j", "0", "-s", tree.path, "-p", tree.prefix,
         tree.site_packages(series)],
        "byte-compiling site-packages",
    )  # fmt: skip


def relocate(tree: Tree) -> None:
    """Point the venv at the prefix: bin/ links into the tree become relative, pyvenv.cfg names
    <prefix>/python/bin. Anything else still naming the staging directory fails the build."""
    staged = str(tree.path)
    for marker in UV_VENV_MARKERS:
        (tree.path / marker).unlink(missing_ok=True)
    for link in (tree.path / "bin").iterdir():
        if link.is_symlink() and os.readlink(link).startswith(staged):
            target = os.path.relpath(os.readlink(link), link.parent)
            link.unlink()
            link.symlink_to(target)
    config = tree.path / "pyvenv.cfg"
    lines = [
        line.replace(staged, tree.prefix)
        for line in config.read_text().splitlines()
        if not line.startswith("command")  # uv's command line names the staging directory
    ]
    config.write_text("\n".join(lines) + "\n")
    if leftovers := files_naming(tree.path, staged.encode()):
        shown = ", ".join(str(path.relative_to(tree.path)) for path in leftovers[:5])
        raise RuntimeBuildError(f"files still name the staging directory after relocation: {shown}")


def files_naming(root: Path, needle: bytes) -> list[Path]:
    """Regular files under root whose content contains needle."""
    found = []
    for directory, _, names in os.walk(root):
        for name in names:
            path = Path(directory, name)
            if not path.is_symlink() and needle in path.read_bytes():
                found.append(path)
    return sorted(found)
