"""The toolchain a build used, as facts for its SBOM: the compiler, the linker (binutils) and
llvm-bolt, each with the version it reports and, where the package database knows the tool,
the package that ships it. Standard library only (it runs where the build ran)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

from .linked import OwnedBy

_VERSION = r"([0-9]+(?:\.[0-9]+)+)"
# Whole lines (fullmatch), the version's end marked by the line's end or a separator:
# "gcc (Debian 12.2.0-14+deb12u1) 12.2.0", "gcc (GCC) 8.5.0 20210514 (Red Hat 8.5.0-20)"
_GCC = re.compile(rf"\S+ \([^)]*\) {_VERSION}(?: .*)?")
# "GNU ld (GNU Binutils for Debian) 2.40", "GNU ld version 2.30-123.el8"
_LD = re.compile(rf"GNU ld (?:\([^)]*\) |version ){_VERSION}(?:[- ].*)?")
# "Debian LLVM version 16.0.6" / "  LLVM version 19.1.7" (then "BOLT revision ...")
_BOLT = re.compile(rf"(?:.*\s)?LLVM version {_VERSION}.*")


@dataclass(frozen=True)
class Tool:
    """One tool of the toolchain: role (compiler, linker, bolt), the component's name, the
    version it reports, and the package that ships it (None: not known to the database)."""

    role: str
    name: str
    version: str
    package: OwnedBy | None = None


# role -> (component name, the command that prints the version, its pattern)
TOOLS: dict[str, tuple[str, list[str], re.Pattern[str]]] = {
    "compiler": ("gcc", ["gcc", "--version"], _GCC),
    "linker": ("binutils", ["ld", "--version"], _LD),
    "bolt": ("llvm-bolt", ["llvm-bolt", "--version"], _BOLT),
}


def parse_version(role: str, output: str) -> str | None:
    """The version in a tool's --version output (the first line that states one)."""
    pattern = TOOLS[role][2]
    for line in output.splitlines():
        match = pattern.fullmatch(line)
        if match:
            return match.group(1)
    return None


def toolchain(
    owner_of: Callable[[str], OwnedBy | None] | None = None,
    env: dict[str, str] | None = None,
    bolt: str | None = None,
) -> list[Tool]:
    """The tools on PATH (env's, else this process's): gcc, ld, and llvm-bolt (at `bolt`, a
    path, when the build used one outside PATH). A tool that is absent is left out."""
    path = (env or os.environ).get("PATH")
    tools = []
    for role, (name, argv, _) in TOOLS.items():
        executable = bolt if role == "bolt" and bolt else shutil.which(argv[0], path=path)
        if executable is None:
            continue
        result = subprocess.run([executable, *argv[1:]], capture_output=True, text=True, env=env, check=False)
        version = parse_version(role, result.stdout)
        if result.returncode != 0 or version is None:
            continue
        package = owner_of(os.path.realpath(executable)) if owner_of else None
        tools.append(Tool(role, name, version, package))
    return tools
