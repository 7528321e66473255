"""Runtime definitions: one TOML file per runtime in a definitions directory (the repository's
runtimes/, or --definitions DIR), validated once into RuntimeDefinition.

    # runtimes/fastapi-demo.toml
    name = "fastapi-demo"
    version = "1.0.0"                # or "git-tag": the exact tag of the definitions' commit
    python = "3.13"                  # a series (its newest published build) or a release
    requirements = "fastapi-demo/requirements.txt"   # or a uv.lock / pylock.toml path
    prefix = "/opt/runtimes/{name}/{version}"   # the default: the version resolved into it
    platforms = ["debian-12", "ubuntu-2404"]
    arches = ["x86_64", "aarch64"]

Paths are relative to the TOML file. A requirements.txt must pin every requirement with
--hash=sha256: (pip's and uv's hash-checking mode) and hold nothing else: option lines (-r, -c,
-e, --index-url, ...) are refused, as what they bring in is outside the lock's digest. A lock
file carries its own hashes. A uv.lock is installed as `uv export --no-default-groups` gives it:
the project's dependencies only, none of its dependency groups (`dev` included); its digest
covers uv.lock and the pyproject.toml beside it (uv export reads both).

The prefix is where the runtime is installed; it holds the runtime's version ({version}: the
TOML's, the git tag or --runtime-version, resolved by at_version), so two versions never own the
same files. It must be under /opt (never a system directory), outside /opt/python (the farm's
Python builds), and name the runtime ({name}) and its version, as placeholders or spelled out.
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

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from buildfarm.digests import SHA256_HEX
from buildfarm.errors import UsageError, first_error
from buildfarm.platforms import UnknownArchError, UnknownPlatformError, canonical_arch, load_registry
from buildfarm.suggest import unknown_name
from buildfarm.versions import VersionError, check_version_or_series

NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
# A runtime version is a store key segment (no '~': buildfarm.store refuses it) and part of a
# .deb package name: lowercase, no '_'.
RUNTIME_VERSION = re.compile(r"[a-z0-9][a-z0-9.+-]{0,62}")
GIT_TAG = "git-tag"  # version = "git-tag": the exact git tag of the definitions' checkout
PREFIX_SEGMENT = re.compile(r"[A-Za-z0-9._+-]+")
PLACEHOLDER = re.compile(r"\{(name|version)\}")
DEFAULT_PREFIX = "/opt/runtimes/{name}/{version}"
PREFIX_RULE = (
    "under /opt (no system directory), not in /opt/python (the farm's Python builds), naming the "
    "runtime ({name}) and its version ({version}), e.g. " + DEFAULT_PREFIX
)
# How a uv.lock is exported for install (runtimes.build): the lock as it is, without the project
# itself and without any dependency group (dev included). Its digest covers these options too.
UV_EXPORT_OPTIONS = ("--frozen", "--no-emit-project", "--no-default-groups")
HASH_OPTION = re.compile(f"--hash=sha256:{SHA256_HEX}")  # one word of a requirement's line, whole
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


def logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, logical line) of a requirements.txt: backslash continuations joined,
    comments, blank lines dropped."""
    found, start, pending = [], 0, ""
    for number, raw in enumerate(text.splitlines(), start=1):
        start = start or number
        if raw.endswith("\\"):
            pending += raw[:-1] + " "
            continue
        line = (pending + raw).split(" #", 1)[0].strip()
        if line and not line.startswith("#"):
            found.append((start, line))
        start, pending = 0, ""
    return found


def unhashed_requirements(text: str) -> list[str]:
    """The requirements of a requirements.txt that carry no --hash=sha256: (options are not
    requirements)."""
    return [
        line.split()[0]
        for _, line in logical_lines(text)
        if not line.startswith("-") and not any(HASH_OPTION.fullmatch(word) for word in line.split()[1:])
    ]


def option_lines(text: str) -> list[tuple[int, str]]:
    """A requirements.txt's option lines (-r, -c, -e, --index-url, ...): an include, an editable
    or an index changes what is installed while the file, the lock's digest, stays the same."""
    return [(number, line) for number, line in logical_lines(text) if line.startswith("-")]


def prefix_problem(prefix: str, name: str, version: str) -> str | None:
    """Why a prefix (a template: {name}, {version}) is refused, or None. It must follow the
    version (two versions at one prefix would own the same files) and stay out of the system's
    directories and the farm's Pythons (a package must not take over what others own)."""
    path = PurePosixPath(prefix)
    segments = path.parts[1:]
    if not path.is_absolute() or not segments or str(path) != prefix:
        return f"prefix {prefix!r} must be an absolute, normalized path like {DEFAULT_PREFIX}"
    if any(s in (".", "..") or not PREFIX_SEGMENT.fullmatch(PLACEHOLDER.sub("x", s)) for s in segments):
        allowed = "letters, digits, . _ + - and {name} {version}"
        return f"prefix {prefix!r} may only hold {allowed} in its segments"

    def named(placeholder: str, literal: str) -> bool:
        return any(placeholder in s or s == literal for s in segments[1:])

    if (
        segments[0] != "opt"
        or len(segments) < 3
        or segments[1] == "python"
        or not named("{name}", name)
        or not named("{version}", "" if version == GIT_TAG else version)
    ):
        return f"prefix {prefix!r} must be {PREFIX_RULE}"
    return None


class RuntimeDefinition(BaseModel):
    """One runtime: a Python and a locked set of packages in a venv at a fixed prefix."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    version: str
    python: str
    requirements: str
    prefix: str = DEFAULT_PREFIX  # a template until at_version resolves it
    platforms: tuple[str, ...] = Field(min_length=1)
    arches: tuple[str, ...] = Field(min_length=1)
    description: str = ""
    source: Path = Field(exclude=True)  # the TOML file (requirements are relative to it)
    _prefix_template: str = PrivateAttr(default=DEFAULT_PREFIX)  # prefix as the TOML wrote it

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
    def _prefix(self) -> RuntimeDefinition:
        if problem := prefix_problem(self.prefix, self.name, self.version):
            raise ValueError(problem)
        self._prefix_template = self.prefix
        return self

    @model_validator(mode="after")
    def _requirements_file(self) -> RuntimeDefinition:
        path = self.requirements_path
        if not path.is_file():
            raise ValueError(f"requirements {self.requirements!r}: no such file ({path})")
        if self.lock_kind == "uv.lock" and not (path.parent / "pyproject.toml").is_file():
            raise ValueError(
                f"requirements {self.requirements!r}: no pyproject.toml beside it (uv export reads it)"
            )
        if self.lock_kind != "requirements.txt":
            return self
        text = path.read_text()
        if options := option_lines(text):
            number, line = options[0]
            raise ValueError(
                f"requirements {self.requirements!r} line {number}: {line!r} is refused: a requirements.txt "
                "holds hashed pins only (an include, editable or index option is outside the lock's digest)"
            )
        if missing := unhashed_requirements(text):
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

    def lock_inputs(self) -> list[Path]:
        """Every file that decides what a build installs: the lock, and beside a uv.lock its
        pyproject.toml (uv export reads the project's dependency groups from it)."""
        path = self.requirements_path
        return [path, path.parent / "pyproject.toml"] if self.lock_kind == "uv.lock" else [path]

    def lock_sha256(self) -> str:
        """The digest of what decides the install: a change plans a new runtime build. A single
        file's is its sha256 (as published builds recorded it); a uv.lock's covers pyproject.toml
        and the export's options, each file framed by its name and size."""
        if self.lock_kind != "uv.lock":
            return hashlib.sha256(self.requirements_path.read_bytes()).hexdigest()
        digest = hashlib.sha256(" ".join(("uv export", *UV_EXPORT_OPTIONS, "\n")).encode())
        for path in self.lock_inputs():
            data = path.read_bytes()
            digest.update(f"{path.name}\0{len(data)}\0".encode())
            digest.update(data)
        return digest.hexdigest()

    def resolved_version(self, override: str | None = None) -> str:
        """The runtime's version: an override (validated), the TOML's, or its checkout's git tag."""
        if override is not None:
            if not RUNTIME_VERSION.fullmatch(override):
                raise UsageError(f"runtime version {override!r} must be lowercase letters, digits and . + -")
            return override
        if self.version != GIT_TAG:
            return self.version
        try:
            return exact_git_tag(self.source.parent)
        except DefinitionError as error:
            raise DefinitionError(f"runtime definition {self.source}: {error}") from None

    def prefix_for(self, version: str) -> str:
        """The install prefix of `version` (resolved). A prefix spelled out with the TOML's version
        serves that version only: another one there would own the same files."""
        template = self._prefix_template
        if "{version}" not in template and version != self.version:
            raise UsageError(
                f"runtime {self.name!r}: prefix {template!r} is version {self.version}'s; write "
                f"{{version}} in it to build {version}"
            )
        return template.replace("{name}", self.name).replace("{version}", version)

    def at_version(self, version: str) -> RuntimeDefinition:
        """This definition as a build of `version` (resolved) sees it: version and prefix set."""
        return self.model_copy(update={"version": version, "prefix": self.prefix_for(version)})

    def supports(self, platform: str, arch: str) -> bool:
        return platform in self.platforms and arch in self.arches


def _git(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            ["git", "-C", str(directory), *args], capture_output=True, text=True, check=False
        )
    except OSError as error:  # no git on PATH: this definition has no version, the others do
        raise DefinitionError(
            f"version = {GIT_TAG!r} needs git, which cannot run here ({error.strerror}); "
            "pass --runtime-version"
        ) from None


def exact_git_tag(directory: Path) -> str:
    """The tag of the commit checked out at directory (git describe --exact-match), lowercased
    (PEP 440 and Debian compare versions without case, and a runtime version is lowercase: V1.0
    and v1.0 are one version) and validated; DefinitionError when git, a checkout (a copy without
    .git, as the Lambda bundle is) or a tag is missing."""
    inside = _git(directory, "rev-parse", "--is-inside-work-tree")
    if inside.returncode != 0 or inside.stdout.strip() != "true":
        said = (inside.stderr.strip().splitlines() or ["not a work tree"])[-1]
        raise DefinitionError(
            f"version = {GIT_TAG!r}, but {directory} is not in a git checkout ({said}); "
            "pass --runtime-version"
        )
    result = _git(directory, "describe", "--tags", "--exact-match", "HEAD")
    tag = result.stdout.strip()
    if result.returncode != 0 or not tag:
        raise DefinitionError(
            f"version = {GIT_TAG!r}, but {directory} is not at a tagged commit; pass --runtime-version"
        )
    if not RUNTIME_VERSION.fullmatch(tag.lower()):
        raise DefinitionError(f"git tag {tag!r} is not a valid runtime version; pass --runtime-version")
    return tag.lower()


def load_definition(path: Path) -> RuntimeDefinition:
    """One TOML file -> RuntimeDefinition; DefinitionError (one line naming the file) otherwise."""
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise DefinitionError(f"runtime definition {path}: {error}") from None
    try:
        definition = RuntimeDefinition.model_validate({**data, "source": path})
    except ValidationError as error:
        raise DefinitionError(
            f"runtime definition {path}: {first_error(error, whole='definition', plain=True)}"
        ) from None
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
