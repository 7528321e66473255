"""Which wheels run on a Lambda target: pure tag logic over `packaging.tags`, no I/O.

A target is a CPython X.Y on an arch with the runtime's glibc (2.34 for provided.al2023). Its
platforms are the manylinux tags a glibc of that version accepts, newest first, as pip on that
system would list them: manylinux_2_34 down to manylinux_2_17 (manylinux2014) on aarch64, and on
down to manylinux_2_5 (manylinux2010, manylinux1) on x86_64. musllinux never: Lambda is glibc.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import InvalidWheelFilename, parse_wheel_filename

from buildfarm.errors import UsageError
from buildfarm.platforms import ARCHES
from buildfarm.versions import is_series

# The oldest glibc each arch has a manylinux tag for (PEP 600: x86_64 since manylinux1).
OLDEST_GLIBC_MINOR = {"x86_64": 5, "aarch64": 17}
# The legacy names (PEPs 513, 571, 599) of manylinux_2_<minor>.
LEGACY_MANYLINUX = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
# No leading zeros: "3.09" or "2.034" would name a tag no wheel has.
GLIBC_VERSION = re.compile(r"2\.(?:0|[1-9][0-9]?)", re.ASCII)
# Lambda's OS-only runtime provided.al2023 runs Amazon Linux 2023: glibc 2.34.
AL2023_GLIBC = "2.34"


class TargetError(UsageError, ValueError):
    """A target value that is not a Python X.Y, a known arch or a glibc 2.N (bad input: exit 2)."""


@dataclass(frozen=True)
class Target:
    """Where the layer runs: CPython `python` (X.Y) on `arch` with glibc `glibc` (2.N)."""

    python: str
    arch: str
    glibc: str = AL2023_GLIBC

    def __post_init__(self) -> None:
        if not is_series(self.python):
            raise TargetError(f"Python version {self.python!r} is not X.Y (e.g. 3.13)")
        if self.arch not in ARCHES:
            raise TargetError(f"unknown arch {self.arch!r} (one of: {', '.join(ARCHES)})")
        if not GLIBC_VERSION.fullmatch(self.glibc):
            raise TargetError(f"glibc version {self.glibc!r} is not 2.N (e.g. {AL2023_GLIBC})")
        if self.glibc_minor < OLDEST_GLIBC_MINOR[self.arch]:
            raise TargetError(f"glibc {self.glibc} is older than any manylinux tag for {self.arch}")

    @property
    def version_tuple(self) -> tuple[int, int]:
        major, minor = self.python.split(".")
        return int(major), int(minor)

    @property
    def glibc_minor(self) -> int:
        return int(self.glibc.split(".")[1])

    @property
    def abi(self) -> str:
        return "cp{}{}".format(*self.version_tuple)

    @cached_property
    def platforms(self) -> tuple[str, ...]:
        """manylinux platform tags from the target's glibc down to the arch's oldest, with the
        legacy alias after its manylinux_2_N twin (pip's order)."""
        names: list[str] = []
        for minor in range(self.glibc_minor, OLDEST_GLIBC_MINOR[self.arch] - 1, -1):
            names.append(f"manylinux_2_{minor}_{self.arch}")
            if minor in LEGACY_MANYLINUX:
                names.append(f"{LEGACY_MANYLINUX[minor]}_{self.arch}")
        return tuple(names)

    @cached_property
    def tags(self) -> frozenset[Tag]:
        """Every tag a wheel from an index may carry to run on the target: cpXY, abi3 and none
        ABIs on its manylinux platforms, and pure py3-none-any."""
        return _tags(self.version_tuple, self.abi, self.platforms)

    @cached_property
    def built_tags(self) -> frozenset[Tag]:
        """The tags of a wheel built here for the target: also the plain linux_<arch> that a
        local build gets (never accepted from an index: nothing says which glibc made it)."""
        return _tags(self.version_tuple, self.abi, (*self.platforms, f"linux_{self.arch}"))

    def describe(self) -> str:
        return f"CPython {self.python} on {self.arch} with glibc {self.glibc}"


def _tags(version: tuple[int, int], abi: str, platforms: tuple[str, ...]) -> frozenset[Tag]:
    return frozenset(
        [
            *cpython_tags(version, abis=[abi], platforms=list(platforms)),
            *compatible_tags(version, abi, platforms=list(platforms)),
        ]
    )


def wheel_tags(filename: str) -> frozenset[Tag]:
    """The tags of a wheel file name (InvalidWheelFilename if it is not one)."""
    return parse_wheel_filename(filename)[3]


def is_compatible(filename: str, target: Target, *, built_here: bool = False) -> bool:
    """Whether the wheel `filename` runs on `target` (built_here: made on this machine, so a
    linux_<arch> tag is its own build's)."""
    accepted = target.built_tags if built_here else target.tags
    return bool(wheel_tags(filename) & accepted)


@dataclass(frozen=True)
class SortedDownloads:
    """What the resolver downloaded, by file name: compatible wheels, incompatible wheels, sdists."""

    compatible: tuple[str, ...]
    incompatible: tuple[str, ...]
    sdists: tuple[str, ...]


def sort_downloads(filenames: list[str], target: Target) -> SortedDownloads:
    """Sort download file names: a wheel is compatible if one of its tags runs on `target`;
    anything else is an sdist (.tar.gz, .zip)."""
    compatible, incompatible, sdists = [], [], []
    for name in sorted(filenames):
        try:
            (compatible if is_compatible(name, target) else incompatible).append(name)
        except InvalidWheelFilename:
            sdists.append(name)
    return SortedDownloads(tuple(compatible), tuple(incompatible), tuple(sdists))


def pip_target_options(target: Target, *, built_here: bool = False) -> list[str]:
    """pip's options selecting wheels for `target` (download, or install --target)."""
    platforms = [*target.platforms, *([f"linux_{target.arch}"] if built_here else [])]
    options = ["--only-binary=:all:", "--python-version", target.python, "--implementation", "cp"]
    options += ["--abi", target.abi, "--abi", "abi3", "--abi", "none"]
    for platform in platforms:
        options += ["--platform", platform]
    return options


def tag_strings(filename: str) -> list[str]:
    """A wheel's tags as sorted strings, for the report."""
    return sorted(str(tag) for tag in wheel_tags(filename))
