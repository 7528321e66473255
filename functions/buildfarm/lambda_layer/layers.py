"""`buildfarm lambda layer|deps`: stage the layers in a scratch directory, check their size
against Lambda's limit, then zip them and write the report into the output directory, which
gets nothing unless every check passed (a package that could not be made: the report only)."""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from buildfarm.errors import UsageError
from buildfarm.lambda_layer.deps import DepsResult, build_deps, install_wheels
from buildfarm.lambda_layer.glibc import version_tuple
from buildfarm.lambda_layer.package import (
    LAMBDA_UNZIPPED_LIMIT_BYTES,
    megabytes,
    sha256_of,
    unzipped_bytes,
    write_layer_zip,
)
from buildfarm.lambda_layer.runtime import (
    PublishedPython,
    published_python,
    site_packages,
    stage_runtime_layer,
)
from buildfarm.lambda_layer.tags import Target

REPORT_FILE = "lambda-layers.json"
OUTPUT_ZIPS = ("runtime-layer.zip", "deps-layer.zip")
REPORT_SCHEMA_VERSION = 1


@dataclass
class LayerOptions:
    """What every layer build takes: the target's arch and glibc, where to write, the index."""

    out: Path
    arch: str | None = None
    glibc: str = "2.34"
    index_url: str | None = None
    limit_bytes: int = LAMBDA_UNZIPPED_LIMIT_BYTES


@dataclass
class StagedLayer:
    name: str  # "runtime" or "deps"
    root: Path
    result: DepsResult

    @property
    def zip_name(self) -> str:
        return f"{self.name}-layer.zip"  # one of OUTPUT_ZIPS


@dataclass
class LayerBuild:
    """What was written to the output directory."""

    report: dict
    files: list[Path] = field(default_factory=list)

    @property
    def failed(self) -> list[str]:
        return self.report["failed"]


def build_runtime_and_deps(
    python_source: str, requirements: Path | None, options: LayerOptions
) -> LayerBuild:
    """The runtime layer for the Python at python_source, and a deps layer from requirements."""
    if requirements is not None and not requirements.is_file():
        raise UsageError(f"requirements file {requirements} does not exist")
    with tempfile.TemporaryDirectory(prefix="buildfarm-lambda-") as scratch:
        work = Path(scratch)
        (work / "fetch").mkdir()
        python = published_python(python_source, work / "fetch")
        if options.arch is not None and options.arch != python.arch:
            raise UsageError(f"the Python at {python_source} is for {python.arch}, not {options.arch}")
        _check_glibc(python, options.glibc)
        target = Target(python.series, python.arch, options.glibc)
        runtime = StagedLayer("runtime", work / "runtime", DepsResult([], []))
        runtime.result = stage_runtime_layer(
            python, target, runtime.root, work / "runtime-work", options.index_url
        )
        layers = [runtime]
        if requirements is not None:
            interpreter = runtime.root / "python" / "bin" / f"python{target.python}"
            layers.append(_stage_deps(requirements, target, interpreter, work, options.index_url))
        return _finish(layers, target, python, options, work)


def _check_glibc(python: PublishedPython, target_glibc: str) -> None:
    """UsageError for a Python built on a newer glibc than the target's: it would need symbols
    the runtime lacks (a layer that is written but cannot start). --glibc names a runtime's
    newer glibc when it has one."""
    if python.glibc and version_tuple(python.glibc) > version_tuple(target_glibc):
        raise UsageError(
            f"the Python at {python.source} was built on {python.platform} (glibc {python.glibc}), "
            f"newer than the target's glibc {target_glibc}: use an amazonlinux-2023 build for "
            f"provided.al2023 (or --glibc {python.glibc} for a runtime that has it)"
        )


def build_deps_only(
    requirements: Path, interpreter: Path, python_version: str, options: LayerOptions
) -> LayerBuild:
    """A deps layer from requirements for `interpreter`'s Python X.Y."""
    target = Target(python_version, options.arch or "x86_64", options.glibc)
    with tempfile.TemporaryDirectory(prefix="buildfarm-lambda-") as scratch:
        work = Path(scratch)
        layer = _stage_deps(requirements, target, interpreter, work, options.index_url)
        return _finish([layer], target, None, options, work)


def _stage_deps(
    requirements: Path, target: Target, interpreter: Path, work: Path, index_url: str | None
) -> StagedLayer:
    layer = StagedLayer(
        "deps", work / "deps", build_deps(requirements, target, interpreter, work / "deps-work", index_url)
    )
    if not layer.result.failed:
        install_wheels(interpreter, layer.result.wheels, target, site_packages(layer.root, target))
    return layer


def _finish(
    layers: list[StagedLayer],
    target: Target,
    python: PublishedPython | None,
    options: LayerOptions,
    work: Path,
) -> LayerBuild:
    """Check the size, zip the layers (unless a package failed), write the report: then move
    everything into --out at once."""
    sizes = _within_limit(layers, options.limit_bytes)
    failed = sorted(p.name for layer in layers for p in layer.result.failed)
    report = {
        "schema_version": REPORT_SCHEMA_VERSION,
        "target": {"python": target.python, "arch": target.arch, "glibc": target.glibc},
        "python": python.as_json() if python else None,
        "layers": [],
        "unzipped_total_bytes": sum(sizes.values()),
        "unzipped_limit_bytes": options.limit_bytes,
        "failed": failed,
    }
    report["target"]["platforms"] = list(target.platforms)
    made = []
    for layer in layers:
        entry = {"name": layer.name, "unzipped_bytes": sizes[layer.name]}
        entry["packages"] = [package.as_json() for package in layer.result.packages]
        if not failed:
            made.append(work / layer.zip_name)
            write_layer_zip(layer.root, made[-1])
            entry.update(file=layer.zip_name, zipped_bytes=made[-1].stat().st_size)
            entry["sha256"] = sha256_of(made[-1])
        report["layers"].append(entry)
    made.append(work / REPORT_FILE)
    made[-1].write_text(json.dumps(report, indent=2) + "\n")
    return LayerBuild(report, _move_into(options.out, made))


def _within_limit(layers: list[StagedLayer], limit_bytes: int) -> dict[str, int]:
    """Each layer's unzipped size; UsageError if together they exceed the limit."""
    sizes = {layer.name: unzipped_bytes(layer.root) if layer.root.exists() else 0 for layer in layers}
    total = sum(sizes.values())
    if total > limit_bytes:
        parts = ", ".join(f"{name} {megabytes(size)}" for name, size in sizes.items())
        raise UsageError(
            f"the layers take {megabytes(total)} unzipped ({parts}), over the limit of "
            f"{megabytes(limit_bytes)} ({limit_bytes} bytes): nothing written"
        )
    return sizes


def _move_into(out: Path, files: list[Path]) -> list[Path]:
    """Move the files into out, first removing what an earlier run left there (so out never
    mixes a new report with an old zip)."""
    out.mkdir(parents=True, exist_ok=True)
    for name in (*OUTPUT_ZIPS, REPORT_FILE):
        (out / name).unlink(missing_ok=True)
    written = []
    for path in files:
        written.append(out / path.name)
        shutil.move(path, written[-1])
    return written
