"""What the dependency builder needs from a pip requirements file beyond what pip reads itself:
the `--hash` options per project, so a compatible wheel fetched in place of an incompatible one is
checked against the same hashes. pip parses the file for the resolver; this only reads hashes."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

HASH_OPTION = re.compile(r"--hash[= ](sha256|sha384|sha512):([0-9a-f]+)")
INCLUDE_OPTIONS = ("-r", "--requirement")


class RequirementsError(ValueError):
    """A requirements file that is missing or cannot be read; the message names it."""


def logical_lines(text: str) -> list[str]:
    """The file's lines with backslash continuations joined and comments dropped (pip's rules:
    a comment starts at '#' at the line start or after whitespace)."""
    joined = re.sub(r"\\\n", "", text)
    lines = []
    for line in joined.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", line).strip()
        if line:
            lines.append(line)
    return lines


def hashes_by_project(path: Path, _seen: frozenset[Path] = frozenset()) -> dict[str, list[str]]:
    """{canonical project name: ["sha256:...", ...]} for each requirement line with hashes,
    following -r includes relative to the including file."""
    path = path.resolve()
    if path in _seen:
        return {}
    try:
        text = path.read_text()
    except OSError as error:
        raise RequirementsError(f"cannot read requirements file {path}: {error.strerror}") from None
    found: dict[str, list[str]] = {}
    for line in logical_lines(text):
        include = _included_file(line)
        if include is not None:
            for name, digests in hashes_by_project(path.parent / include, _seen | {path}).items():
                found.setdefault(name, []).extend(digests)
            continue
        digests = [f"{kind}:{value}" for kind, value in HASH_OPTION.findall(line)]
        name = _project_name(line)
        if digests and name:
            found.setdefault(name, []).extend(digests)
    return found


def _included_file(line: str) -> str | None:
    words = shlex.split(line)
    if words[0] in INCLUDE_OPTIONS and len(words) > 1:
        return words[1]
    for option in INCLUDE_OPTIONS[1:]:
        if words[0].startswith(option + "="):
            return words[0].split("=", 1)[1]
    return None


def _project_name(line: str) -> str | None:
    if line.startswith("-"):
        return None
    specifier = line.split(" --", 1)[0].strip()
    try:
        return canonicalize_name(Requirement(specifier).name)
    except InvalidRequirement:
        return None  # a URL or path line: pip reports it if it is wrong


def pinned_line(name: str, version: str, hashes: list[str]) -> str:
    """A requirement line for exactly name==version with the given hashes."""
    return " ".join([f"{name}=={version}", *(f"--hash={digest}" for digest in hashes)])
