"""The Lambda dependency builder: requirements.txt -> wheels that run on the target, each with
how it was made, then installed into a layer's site-packages.

1. The resolver chooses: `pip download -r requirements.txt` in a Python of the target's X.Y on
   this machine (hash-checking when the file has hashes).
2. The downloads are sorted into compatible wheels, incompatible wheels and sdists (tags.py).
3. For each incompatible wheel, a wheel of the same version for the target's tags is downloaded
   (manylinux up to the target's glibc); failing that its sdist joins the sdists.
4. The sdists are built, and built again without a C compiler if that fails (sdists.py).
5. What could not be made is reported by name; the rest is installed.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from packaging.utils import (
    InvalidSdistFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)

from buildfarm.errors import BuildfarmError, UsageError
from buildfarm.lambda_layer.piprun import hash_mismatch, last_error, resolution_error, run_pip
from buildfarm.lambda_layer.requirements import hashes_by_project, pinned_line
from buildfarm.lambda_layer.sdists import build_sdist
from buildfarm.lambda_layer.tags import Target, pip_target_options, sort_downloads, tag_strings

# How each package was made (the report's "outcome").
WHEEL, BUILT, BUILT_PURE, FAILED = "wheel", "built", "built-pure", "failed"


@dataclass
class PackageReport:
    """One package of the layer: the wheel used and how it was made, or why it failed."""

    name: str
    version: str
    outcome: str
    wheel: str | None = None
    tags: list[str] = field(default_factory=list)
    sdist: str | None = None
    replaced: str | None = None  # the resolver's wheel the target could not run
    reason: str | None = None

    def as_json(self) -> dict:
        return {key: value for key, value in asdict(self).items() if value not in (None, [])}


@dataclass
class DepsResult:
    packages: list[PackageReport]
    wheels: list[Path]

    @property
    def failed(self) -> list[PackageReport]:
        return [package for package in self.packages if package.outcome == FAILED]


def interpreter_version(interpreter: Path) -> str:
    """X.Y of a Python interpreter."""
    if not interpreter.is_file():
        raise UsageError(f"interpreter {interpreter} does not exist")
    run = run_pip(interpreter, ["--version"])
    if not run.ok:
        raise UsageError(f"{interpreter} cannot run pip: {last_error(run.output)}")
    # "pip 26.3 from /.../site-packages/pip (python 3.13)"
    return run.output.strip().rsplit("(python ", 1)[-1].rstrip(")")


def build_deps(
    requirements: Path, target: Target, interpreter: Path, workdir: Path, index_url: str | None = None
) -> DepsResult:
    """Make a wheel for every package `requirements` resolves to, into workdir/wheels."""
    if not requirements.is_file():
        raise UsageError(f"requirements file {requirements} does not exist")
    version = interpreter_version(interpreter)
    if version != target.python:
        raise UsageError(f"{interpreter} is Python {version}, not the target's {target.python}")
    downloads, wheels_dir = workdir / "downloads", workdir / "wheels"
    wheels_dir.mkdir(parents=True)
    run = run_pip(
        interpreter, ["download", "--dest", str(downloads), "-r", str(requirements)], index_url=index_url
    )
    if not run.ok:
        raise resolution_error(run.output)
    files = sorted(path.name for path in downloads.iterdir())
    found = sort_downloads(files, target)
    reports = [_wheel_report(downloads / name, wheels_dir) for name in found.compatible]
    sdists = [downloads / name for name in found.sdists]
    hashes = hashes_by_project(requirements)
    for name in found.incompatible:
        report, sdist = _retarget(downloads / name, target, interpreter, workdir, hashes, index_url)
        if report is not None:
            reports.append(report)
        if sdist is not None:
            sdists.append(sdist)
    for sdist in sdists:
        reports.append(_build(sdist, target, interpreter, wheels_dir, index_url))
    reports.sort(key=lambda report: canonicalize_name(report.name))
    wheels = [wheels_dir / report.wheel for report in reports if report.wheel]
    return DepsResult(reports, wheels)


def _wheel_report(path: Path, wheels_dir: Path, replaced: str | None = None) -> PackageReport:
    name, version, _, _ = parse_wheel_filename(path.name)
    shutil.copy2(path, wheels_dir / path.name)
    return PackageReport(
        str(name), str(version), WHEEL, wheel=path.name, tags=tag_strings(path.name), replaced=replaced
    )


def _retarget(
    incompatible: Path,
    target: Target,
    interpreter: Path,
    workdir: Path,
    hashes: dict[str, list[str]],
    index_url: str | None,
) -> tuple[PackageReport | None, Path | None]:
    """A compatible wheel of the same version as `incompatible` (report, None), else its sdist
    to build (None, sdist), else (failed report, None)."""
    name, version, _, _ = parse_wheel_filename(incompatible.name)
    dest = workdir / "retarget" / str(name)
    line = pinned_line(str(name), str(version), hashes.get(str(name), []))
    pinned = dest / "requirement.txt"
    dest.mkdir(parents=True)
    pinned.write_text(line + "\n")
    args = ["download", "--no-deps", "--dest", str(dest), "-r", str(pinned)]
    wheel = run_pip(interpreter, [*args, *pip_target_options(target)], index_url=index_url)
    if hash_mismatch(wheel.output):
        raise UsageError(f"requirements: {hash_mismatch(wheel.output)}")
    if wheel.ok:
        return _wheel_report(next(dest.glob("*.whl")), workdir / "wheels", replaced=incompatible.name), None
    sdist = run_pip(interpreter, [*args, "--no-binary=:all:"], index_url=index_url)
    found = [path for path in dest.iterdir() if path.name != pinned.name]
    if sdist.ok and found:
        return None, found[0]
    reason = (
        f"no wheel of {name} {version} for {target.describe()} "
        f"(manylinux up to {target.platforms[0]}) and no sdist: {last_error(sdist.output)}"
    )
    return PackageReport(str(name), str(version), FAILED, replaced=incompatible.name, reason=reason), None


def _build(
    sdist: Path, target: Target, interpreter: Path, wheels_dir: Path, index_url: str | None
) -> PackageReport:
    try:
        name, version = parse_sdist_filename(sdist.name)
    except InvalidSdistFilename:
        return PackageReport(sdist.name, "", FAILED, sdist=sdist.name, reason="neither a wheel nor an sdist")
    outcome = build_sdist(interpreter, sdist, wheels_dir, target, index_url)
    if outcome.wheel is None:
        return PackageReport(str(name), str(version), FAILED, sdist=sdist.name, reason=outcome.reason)
    return PackageReport(
        str(name),
        str(version),
        BUILT_PURE if outcome.pure_retry else BUILT,
        wheel=outcome.wheel.name,
        tags=tag_strings(outcome.wheel.name),
        sdist=sdist.name,
    )


def install_wheels(interpreter: Path, wheels: list[Path], target: Target, site_packages: Path) -> None:
    """Install the wheels (already checked against the target) into site_packages, compiled
    to bytecode by the target's X.Y (Lambda's /opt is read-only: no .pyc is written there)."""
    if not wheels:
        site_packages.mkdir(parents=True, exist_ok=True)
        return
    args = ["install", "--no-deps", "--no-index", "--target", str(site_packages), "--upgrade"]
    run = run_pip(interpreter, [*args, *pip_target_options(target, built_here=True), *map(str, wheels)])
    if not run.ok:
        raise BuildfarmError(f"installing the wheels into {site_packages} failed: {last_error(run.output)}")
