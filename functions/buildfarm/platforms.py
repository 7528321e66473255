"""The platform registry (builder_image/platforms.json) as typed models.

Infra, planner, runners and packagers all read the registry through this module;
the build driver inside the images reads the same JSON with the standard library.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from datetime import date
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from buildfarm.errors import UsageError, first_error
from buildfarm.suggest import unknown_name
from buildfarm.versions import is_series

Arch = Literal["x86_64", "aarch64"]
ARCHES: tuple[str, ...] = get_args(Arch)
DEB_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}
RPM_ARCH = {"x86_64": "x86_64", "aarch64": "aarch64"}
DOCKER_PLATFORM = {"x86_64": "linux/amd64", "aarch64": "linux/arm64"}
# Debian's (and Docker's) names of the arches, accepted wherever an arch is read: the .deb says amd64.
ARCH_ALIASES: dict[str, str] = {DEB_ARCH[arch]: arch for arch in ARCHES if DEB_ARCH[arch] != arch}


def arch_names(sep: str = ", ") -> str:
    """The arches with their Debian names, for help texts: "x86_64 (amd64), aarch64 (arm64)"."""
    return sep.join(f"{arch} ({DEB_ARCH[arch]})" if DEB_ARCH[arch] != arch else arch for arch in ARCHES)


# A platform id: it names store keys, packages, job definitions, and install.sh carries it in a
# double-quoted shell string. The builder's runtime job and the runtime manifest's schema
# restate it (tests/builder/test_driver_logic.py and tests/functions/runtimes/test_definitions.py
# hold them to this one).
PLATFORM_ID = re.compile(r"[a-z0-9][a-z0-9.-]{0,62}", re.ASCII)  # fullmatch
REGISTRY_ENV = "BUILDFARM_PLATFORMS"
_REPO_BUILDER_IMAGE = Path(__file__).resolve().parents[2] / "builder_image"


class OsRelease(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str
    version_id: str
    id_like: tuple[str, ...] = ()


class Family(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    dockerfile: str
    package_format: Literal["deb", "rpm"]
    common_build_dependencies: tuple[str, ...]
    configure_shell: str | None = None  # CONFIG_SHELL for CPython's configure; None: its own pick


class Bolt(BaseModel):
    """llvm-bolt on a platform: pgo+lto builds of 3.9+ on its arches are BOLT-optimized too."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    package: str  # a build dependency on these arches (Debian ships bolt-16 for amd64 only)
    tools: str  # directory of llvm-bolt and merge-fdata
    arches: tuple[Arch, ...]
    # CPython's BOLT flags (both passes) that this llvm-bolt lacks -> what it has instead
    flag_substitutions: dict[str, str] = {}
    # ld writes no PT_GNU_PROPERTY (binutils < 2.36), so no PT_NOTE that restoring PT_GNU_STACK
    # after BOLT may reuse: the driver links a note of its own into the interpreter for it.
    spare_note: bool = False


class CheckedSource(BaseModel):
    """Where a platform's package names were checked: a public file (repository and path, or
    URL) and what it shows. Required of rpm platforms, whose images cannot be built here."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    source: str = Field(min_length=1)
    what: str = Field(min_length=1)


class Platform(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str
    name: str
    family: Literal["deb", "rpm"]
    base_image: str
    os_release: OsRelease
    codename: str | None = None
    arches: tuple[Arch, ...]
    # The last day the distribution is supported (the LTS/standard support end we build for).
    end_of_support: date
    # The OpenSSL series its libssl-dev/openssl-devel installs; per-series self-test data keys on it.
    openssl: Literal["1.1", "3"]
    build_dependencies: tuple[str, ...]
    # Unversioned runtime library packages a build here may link, the union over its series
    # (3.9-3.12's _crypt and nis too): what a tarball needs. The builder's .deb and .rpm do not
    # use it: they declare what dpkg-shlibdeps / rpm find in their binaries, versioned.
    runtime_dependencies: tuple[str, ...]
    missing_modules: dict[str, str] = {}
    bolt: Bolt | None = None
    # series -> why CPython of that series cannot be built here: the planner never plans it.
    unbuildable_series: dict[str, str] = {}
    checked_against: tuple[CheckedSource, ...] = ()

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not PLATFORM_ID.fullmatch(value):
            raise ValueError(f"platform id {value!r} is not 1-63 lower-case letters, digits, '.' and '-'")
        return value

    @model_validator(mode="after")
    def _rpm_names_checked(self) -> Platform:
        if self.family == "rpm" and not self.checked_against:
            raise ValueError(
                f"{self.id}: an rpm platform needs checked_against (where its package names were checked)"
            )
        return self

    @field_validator("unbuildable_series")
    @classmethod
    def _series_keys(cls, value: dict[str, str]) -> dict[str, str]:
        for series, reason in value.items():
            if not is_series(series) or not reason.strip():
                raise ValueError(
                    f"unbuildable_series needs 'X.Y': 'reason' entries, got {series!r}: {reason!r}"
                )
        return value

    def live(self, today: date) -> bool:
        """Still supported on `today` (the end-of-support day itself included)."""
        return today <= self.end_of_support


class Registry(BaseModel):
    model_config = ConfigDict(frozen=True)
    families: dict[str, Family]
    platforms: dict[str, Platform]
    required_modules: tuple[str, ...]
    # series ("3.13") -> its last day of upstream support
    series_end_of_life: dict[str, date] = {}

    @field_validator("series_end_of_life")
    @classmethod
    def _series(cls, value: dict[str, date]) -> dict[str, date]:
        for series in value:
            if not is_series(series):
                raise ValueError(f"series end_of_life: {series!r} is not a series like 3.13")
        return value

    def live_platforms(
        self, today: date, among: tuple[str, ...] | list[str] | None = None
    ) -> tuple[str, ...]:
        """Platforms (of `among`, else all; registry order) whose end of support has not passed."""
        ids = self.platforms if among is None else [pid for pid in self.platforms if pid in among]
        return tuple(pid for pid in ids if self.platforms[pid].live(today))

    def unbuildable_reason(self, platform_id: str, series: str) -> str | None:
        """Why `series` cannot be built on the platform, or None if it can."""
        return self.get(platform_id).unbuildable_series.get(series)

    def get(self, platform_id: str) -> Platform:
        try:
            return self.platforms[platform_id]
        except KeyError:
            raise UnknownPlatformError(unknown_name("platform", platform_id, list(self.platforms))) from None

    def family_of(self, platform_id: str) -> Family:
        return self.families[self.get(platform_id).family]

    def build_dependencies(self, platform_id: str, arch: str) -> tuple[str, ...]:
        """All packages a build root for this platform and arch needs (family common +
        platform extras + llvm-bolt's package where the platform has it for the arch)."""
        platform = self.get(platform_id)
        bolt = (platform.bolt.package,) if platform.bolt and arch in platform.bolt.arches else ()
        return self.families[platform.family].common_build_dependencies + platform.build_dependencies + bolt

    def expected_modules(self, platform_id: str) -> tuple[str, ...]:
        missing = self.get(platform_id).missing_modules
        return tuple(m for m in self.required_modules if m not in missing)

    def for_os_release(self, os_id: str, version_id: str, id_like: tuple[str, ...] = ()) -> Platform | None:
        """The platform matching /etc/os-release fields, or None."""
        for platform in self.platforms.values():
            rel = platform.os_release
            ids = {rel.id, *rel.id_like}
            if (os_id in ids or ids & set(id_like)) and version_id.split(".")[0] == rel.version_id.split(".")[
                0
            ]:
                if "." in rel.version_id and version_id != rel.version_id:
                    continue
                return platform
        return None


class UnknownPlatformError(ValueError):
    pass


class UnknownArchError(ValueError):
    pass


def canonical_arch(name: str, among: Sequence[str] = ARCHES) -> str:
    """The registry's name of an arch given as itself or an alias (amd64 -> x86_64, arm64 ->
    aarch64). UnknownArchError if it is not one of `among`: one line with the closest names."""
    arch = ARCH_ALIASES.get(name, name)
    if arch in ARCHES and arch not in among:  # a real arch, not a typo: suggest nothing else
        raise UnknownArchError(f"arch {name!r} is not one of {', '.join(among) or 'none'}")
    if arch not in among:
        aliases = [alias for alias, of in ARCH_ALIASES.items() if of in among]
        raise UnknownArchError(unknown_name("arch", name, [*among, *aliases]))
    return arch


def builder_image_dir() -> Path:
    """builder_image/ of a source checkout, or the copy a wheel or Lambda bundle carries."""
    if (_REPO_BUILDER_IMAGE / "platforms.json").is_file():
        return _REPO_BUILDER_IMAGE
    return Path(str(resources.files("buildfarm") / "builder_image"))


def registry_path() -> Path:
    """$BUILDFARM_PLATFORMS if set, else builder_image/platforms.json."""
    if os.environ.get(REGISTRY_ENV):
        return Path(os.environ[REGISTRY_ENV])
    return builder_image_dir() / "platforms.json"


class RegistryError(UsageError):
    """The platform registry cannot be read or is not a valid registry (exit status 2). Not a
    ValueError, so a pydantic validator that loads the registry lets it through as it is."""


def _registry_problem(path: Path, why: str) -> RegistryError:
    from_env = os.environ.get(REGISTRY_ENV)
    chosen_by_env = bool(from_env) and Path(str(from_env)) == path
    named = f"{REGISTRY_ENV}={from_env!r}" if chosen_by_env else f"platform registry {path}"
    return RegistryError(f"{named}: {' '.join(why.split())}")


def _parse_registry(raw: object) -> Registry:
    if not isinstance(raw, dict):
        raise ValueError(f"not a JSON object but {type(raw).__name__}")
    missing = [key for key in ("families", "platforms", "extension_modules") if key not in raw]
    if missing:
        raise ValueError(f"no {', '.join(repr(key) for key in missing)} key (is it a platforms.json?)")
    platforms, modules = raw["platforms"], raw["extension_modules"]
    if not isinstance(platforms, dict) or not all(isinstance(data, dict) for data in platforms.values()):
        raise ValueError("'platforms' must map each platform id to a JSON object")
    if not isinstance(modules, dict) or not isinstance(modules.get("required"), list):
        raise ValueError("'extension_modules' must be a JSON object with a 'required' list")
    series = raw.get("series") or {}
    return Registry.model_validate(
        {
            "families": raw["families"],
            "platforms": {pid: {**data, "id": pid} for pid, data in platforms.items()},
            "required_modules": modules["required"],
            "series_end_of_life": series.get("end_of_life", {}) if isinstance(series, dict) else series,
        }
    )


@cache
def load_registry(path: Path | None = None) -> Registry:
    """The registry at `path`, else registry_path(). RegistryError (a UsageError naming
    $BUILDFARM_PLATFORMS when that chose the file) if it cannot be read or is not valid."""
    path = path or registry_path()
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise _registry_problem(path, f"cannot read it: {error.strerror or error}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise _registry_problem(path, f"not valid JSON: {error}") from None
    try:
        return _parse_registry(raw)
    except ValueError as error:  # pydantic's ValidationError is a ValueError too
        raise _registry_problem(path, f"not a valid platform registry: {_first_error(error)}") from error


def _first_error(error: Exception) -> str:
    """One line: a pydantic ValidationError's first error with its location, else the message."""
    if isinstance(error, ValidationError) and error.errors():
        return first_error(error, count_rest=True)
    return str(error)
