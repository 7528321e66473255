"""Runtime definitions: one TOML file per runtime in a definitions directory (the repository's
runtimes/, or --definitions DIR), validated once into RuntimeDefinition.

    # runtimes/fastapi-demo.toml
    name = "fastapi-demo"
    version = "1.0.0"                # or "git-tag": the exact tag of the definitions' commit
    python = "3.13"                  # a series (its newest published build) or a release
    requirements = "fastapi-demo/requirements.txt"   # or a uv.lock / pylock.toml path
    prefix = "/opt/runtimes/fastapi-demo/1.0.0"
    platforms = ["debian-12", "ubuntu-2404"]
    arches = ["x86_64", "aarch64"]

Paths are relative to the TOML file. A requirements.txt must pin every requirement with
--hash=sha256: (pip's and uv's hash-checking mode); a lock file carries its own hashes.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import tomllib
from functools import cached_property
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from buildfarm.errors import UsageError
from buildfarm.platforms import UnknownArchError, UnknownPlatformError, canonical_arch, load_registry
from buildfarm.suggest import unknown_name
from buildfarm.versions import VersionError, check_version_or_series

NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
# A runtime version is a store key segment (no '~': buildfarm.store refuses it) and part of a
# .deb package name: lowercase, no '_'.
RUNTIME_VERSION = re.compile(r"[a-z0-9][a-z0-9.+-]{0,62}")
GIT_TAG = "git-tag"  # version = "git-tag": the exact git tag of the definitions' checkout
PREFIX_SEGMENT = re.compile(r"[A-Za-z0-9._+-]+")
HASHED_LINE = re.compile(r"--hash=sha256:[0-9a-f]{64}")
REPOSITORY_DEFINITIONS = Path(__file__).resolve().parents[3] / "runtimes"
PACKAGED_DEFINITIONS = "runtime_definitions"  # where a wheel carries them (pyproject force-include)

LockKind = Literal["requirements.txt", "uv.lock", "pylock.toml"]


class DefinitionError(UsageError):
    """A definition that does not load or validate; the message names the file and the value."""


def lock_kind(path: PurePosixPath) -> LockKind:
    """What a requirements path is, by its file name."""
    if path.name == "uv.lock":
        return "uv.lock"
    if path.name == "pylock.toml" or (path.name.startswith("pylock.") and path.suffix == ".toml"):
        return "pylock.toml"
    return "requirements.txt"


def unhashed_requirements(text: str) -> list[str]:
    """The requirements of a requirements.txt that carry no --hash=sha256: (logical lines,
    backslash continuations joined; comments, blanks and options are not requirements)."""
    logical = re.sub(r"\\\n", " ", text)
    missing = []
    for raw in logical.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#") or line.startswith("-"):
            continue
        if not HASHED_LINE.search(line):
            missing.append(line.split()[0])
    return missing


class RuntimeDefinition(BaseModel):
    """One runtime: a Python and a locked set of packages in a venv at a fixed prefix."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    version: str
    python: str
    requirements: str
    prefix: str
    platforms: tuple[str, ...] = Field(min_length=1)
    arches: tuple[str, ...] = Field(min_length=1)
    description: str = ""
    source: Path = Field(exclude=True)  # the TOML file (requirements are relative to it)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME.fullmatch(value):
            raise ValueError(f"name {value!r} must be lowercase letters, digits and '-' (at most 63)")
        return value

    @field_validator("version")
    @classmethod
    def _version(cls, value: str) -> str:
        if value != GIT_TAG and not RUNTIME_VERSION.fullmatch(value):
            raise ValueError(
                f"version {value!r} must be {GIT_TAG!r} or lowercase letters, digits and . + - "
                "(starting with a letter or digit)"
            )
        return value

    @field_validator("python")
    @classmethod
    def _python(cls, value: str) -> str:
        try:
            return check_version_or_series(value)
        except VersionError as error:
            raise ValueError(str(error)) from None

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        path = PurePosixPath(value)
        segments = path.parts[1:]
        if not path.is_absolute() or not segments or str(path) != value:
            raise ValueError(f"prefix {value!r} must be an absolute, normalized path like /opt/runtimes/NAME")
        if any(s in (".", "..") or not PREFIX_SEGMENT.fullmatch(s) for s in segments):
            raise ValueError(f"prefix {value!r} may only hold letters, digits and . _ + - in its segments")
        return value

    @field_validator("platforms")
    @classmethod
    def _platforms(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        registry = load_registry()
        for platform in value:
            try:
                registry.get(platform)
            except UnknownPlatformError as error:
                raise ValueError(str(error)) from None
        return value

    @field_validator("arches")
    @classmethod
    def _arches(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        try:
            return tuple(canonical_arch(arch) for arch in value)
        except UnknownArchError as error:
            raise ValueError(str(error)) from None

    @model_validator(mode="after")
    def _requirements_file(self) -> RuntimeDefinition:
        path = self.requirements_path
        if not path.is_file():
            raise ValueError(f"requirements {self.requirements!r}: no such file ({path})")
        if self.lock_kind == "requirements.txt" and (missing := unhashed_requirements(path.read_text())):
            raise ValueError(
                f"requirements {self.requirements!r}: every requirement needs --hash=sha256: "
                f"(unhashed: {', '.join(missing)})"
            )
        return self

    @cached_property
    def requirements_path(self) -> Path:
        return (self.source.parent / self.requirements).resolve()

    @property
    def lock_kind(self) -> LockKind:
        return lock_kind(PurePosixPath(self.requirements))

    def lock_sha256(self) -> str:
        """The digest of the locked requirements: a changed lock plans a new runtime build."""
        return hashlib.sha256(self.requirements_path.read_bytes()).hexdigest()

    def resolved_version(self, override: str | None = None) -> str:
        """The runtime's version: an override (validated), the TOML's, or its checkout's git tag."""
        if override is not None:
            if not RUNTIME_VERSION.fullmatch(override):
                raise UsageError(f"runtime version {override!r} must be lowercase letters, digits and . + -")
            return override
        if self.version != GIT_TAG:
            return self.version
        return exact_git_tag(self.source.parent)

    def supports(self, platform: str, arch: str) -> bool:
        return platform in self.platforms and arch in self.arches


def exact_git_tag(directory: Path) -> str:
    """The tag of the commit checked out at directory (git describe --exact-match), lowercased
    and validated; UsageError when there is none."""
    result = subprocess.run(
        ["git", "-C", str(directory), "describe", "--tags", "--exact-match", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    tag = result.stdout.strip()
    if result.returncode != 0 or not tag:
        raise UsageError(
            f"version = {GIT_TAG!r}, but {directory} is not at a tagged commit; pass --runtime-version"
        )
    if not RUNTIME_VERSION.fullmatch(tag):
        raise UsageError(f"git tag {tag!r} is not a valid runtime version; pass --runtime-version")
    return tag


def _one_line(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "definition"
    message = str(first["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}"


def load_definition(path: Path) -> RuntimeDefinition:
    """One TOML file -> RuntimeDefinition; DefinitionError (one line naming the file) otherwise."""
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise DefinitionError(f"runtime definition {path}: {error}") from None
    try:
        definition = RuntimeDefinition.model_validate({**data, "source": path})
    except ValidationError as error:
        raise DefinitionError(f"runtime definition {path}: {_one_line(error)}") from None
    if definition.name != path.stem:
        raise DefinitionError(f"runtime definition {path}: name {definition.name!r} must match the file name")
    return definition


def default_definitions() -> Path:
    """The repository's runtimes/ in a checkout, else the copy a wheel carries."""
    if REPOSITORY_DEFINITIONS.is_dir():
        return REPOSITORY_DEFINITIONS
    return Path(str(resources.files("buildfarm") / PACKAGED_DEFINITIONS))


def definition_files(directory: Path) -> dict[str, Path]:
    """{name: path} of the *.toml files of a definitions directory."""
    if not directory.is_dir():
        raise DefinitionError(f"runtime definitions directory {directory} does not exist")
    return {path.stem: path for path in sorted(directory.glob("*.toml"))}


def find_definition(name: str, directory: Path | None = None) -> RuntimeDefinition:
    """The definition called `name`; UsageError with the closest names if there is none."""
    files = definition_files(directory or default_definitions())
    if name not in files:
        raise UsageError(unknown_name("runtime", name, list(files), label="defined"))
    return load_definition(files[name])


def load_definitions(directory: Path | None = None) -> list[RuntimeDefinition]:
    """Every definition of a directory (the planner's input), in name order."""
    return [load_definition(path) for path in definition_files(directory or default_definitions()).values()]
