"""A runtime's self-tests, before anything is published: every top-level module of every
installed distribution imports, `uv pip check` finds no broken requirement, and the relocated
tree runs at its prefix (moved there in a private mount namespace, with nothing else of the
builder's directory above it visible) when this machine allows that."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from buildfarm.runtimes.build import RuntimeBuildError, Tree, run_step

IMPORT_ALL = (
    "import importlib, sys\n"
    "failed = []\n"
    "for name in sys.argv[1:]:\n"
    "    try:\n"
    "        importlib.import_module(name)\n"
    "    except Exception as error:\n"
    "        failed.append(f'{name} ({type(error).__name__}: {error})')\n"
    "if failed:\n"
    "    sys.exit('does not import: ' + '; '.join(failed))\n"
    "print(sys.prefix)\n"
)


def installed_distributions(site_packages: Path) -> list[dict[str, str]]:
    """[{name, version}] of every distribution in site-packages, by name."""
    found = {
        dist.metadata["Name"]: dist.version
        for dist in importlib.metadata.distributions(path=[str(site_packages)])
    }
    return [{"name": name, "version": found[name]} for name in sorted(found, key=str.lower)]


def _record_top_level(dist: importlib.metadata.Distribution) -> set[str]:
    """Top-level importable names from a distribution's RECORD (no top_level.txt)."""
    names = set()
    for file in dist.files or []:
        parts = file.parts
        if not parts or parts[0] in ("..", "__pycache__") or parts[0].endswith((".dist-info", ".data")):
            continue
        first = parts[0]
        if len(parts) > 1 and first.isidentifier():
            names.add(first)
        elif first.endswith(".py") and first[:-3].isidentifier():
            names.add(first[:-3])
        elif first.endswith(".so") and first.split(".")[0].isidentifier():
            names.add(first.split(".")[0])
    return names


def top_level_modules(site_packages: Path) -> list[str]:
    """Every top-level module the installed distributions provide (top_level.txt, else RECORD),
    private ones ('_x') included: they are imported by their packages anyway."""
    modules: set[str] = set()
    for dist in importlib.metadata.distributions(path=[str(site_packages)]):
        listed = dist.read_text("top_level.txt")
        names = {line.strip() for line in listed.splitlines()} if listed else _record_top_level(dist)
        modules |= {name for name in names if name.isidentifier() and "/" not in name}
    return sorted(modules)


def check_imports(python: Path, modules: list[str], step: str) -> None:
    run_step([python, "-I", "-B", "-c", IMPORT_ALL, *modules], step)


def pip_check(uv: str, tree: Tree) -> str:
    """uv pip check (pip check's rules) on the venv: its report, or RuntimeBuildError."""
    return run_step([uv, "pip", "check", "--no-config", "--python", tree.python], "pip check").strip()


def _mount_point(prefix: Path) -> Path | None:
    """Where a tmpfs goes so that the prefix can be made in it: the prefix's deepest existing
    ancestor, if that is not / (hiding / would hide the system)."""
    ancestor = prefix.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    return ancestor if ancestor != Path("/") else None


MOVE_AND_RUN = (
    "import os, subprocess, sys\n"
    "tmpfs, prefix, tree, *command = sys.argv[1:]\n"
    "if tmpfs:\n"
    "    subprocess.run(['mount', '-t', 'tmpfs', 'runtime-test', tmpfs], check=True)\n"
    "    os.makedirs(prefix, exist_ok=True)\n"
    "subprocess.run(['mount', '--bind', tree, prefix], check=True)\n"
    "os.execv(command[0], command)\n"
)


def moved_check(tree: Tree, modules: list[str]) -> dict[str, Any]:
    """Run the relocated tree at its prefix in a private mount namespace: {"status": "passed"}
    or {"status": "skipped", "reason"} when this machine cannot (not root, no unshare, no
    ancestor to mount on); a failure raises RuntimeBuildError."""
    prefix = Path(tree.prefix)
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return {"status": "skipped", "reason": "needs root and unshare (a private mount namespace)"}
    tmpfs = None if prefix.is_dir() else _mount_point(prefix)
    if not prefix.is_dir() and tmpfs is None:
        return {"status": "skipped", "reason": f"no existing parent of {prefix} to mount a tmpfs on"}
    probe = subprocess.run(["unshare", "--mount", "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        return {"status": "skipped", "reason": "this machine refuses private mount namespaces"}
    python = prefix / "bin" / "python"
    argv = [
        "unshare", "--mount", "--propagation", "private", sys.executable, "-I", "-c", MOVE_AND_RUN,
        str(tmpfs or ""), str(prefix), str(tree.path), str(python), "-I", "-B", "-c", IMPORT_ALL, *modules,
    ]  # fmt: skip
    printed = run_step(argv, f"running the tree at {prefix}").strip()
    if printed != str(prefix):
        raise RuntimeBuildError(f"at {prefix} the venv's sys.prefix is {printed!r}")
    return {"status": "passed", "where": str(prefix)}


def run_selftests(uv: str, tree: Tree, series: str) -> dict[str, Any]:
    """Imports and pip check in the staging tree (before relocation); the caller relocates and
    then calls moved_check. Returns the manifest's selftest record so far."""
    modules = top_level_modules(tree.site_packages(series))
    if not modules:
        raise RuntimeBuildError("the installed distributions provide no importable module")
    check_imports(tree.python, modules, "importing every top-level module")
    report = pip_check(uv, tree)
    return {"imports": modules, "pip_check": report or "ok"}
