"""`buildfarm lambda layer|deps`: Python for AWS Lambda's OS-only runtime (provided.al2023) as
layers: the runtime layer (a published farm build's Python, `bootstrap`, awslambdaric) and a
dependencies layer from requirements.txt, with a JSON report of every package."""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from buildfarm.cli.arg_types import whole_number
from buildfarm.errors import UsageError
from buildfarm.lambda_layer.deps import interpreter_version
from buildfarm.lambda_layer.layers import (
    REPORT_FILE,
    LayerBuild,
    LayerOptions,
    build_deps_only,
    build_runtime_and_deps,
)
from buildfarm.lambda_layer.package import LAMBDA_UNZIPPED_LIMIT_BYTES
from buildfarm.lambda_layer.tags import AL2023_GLIBC, Target, TargetError
from buildfarm.platforms import ARCHES, UnknownArchError, canonical_arch


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "lambda",
        help="build AWS Lambda layers: Python for provided.al2023, and dependencies",
        description="Layers for AWS Lambda's OS-only runtime provided.al2023 (Amazon Linux 2023, "
        "glibc 2.34). Each command writes its zips and lambda-layers.json into --out, or nothing "
        "if an input is wrong or the layers exceed Lambda's unzipped limit.",
    )
    actions = parser.add_subparsers(dest="lambda_command", metavar="ACTION", required=True)
    layer = actions.add_parser(
        "layer",
        help="the runtime layer (our Python + bootstrap + awslambdaric), and a deps layer",
        description="runtime-layer.zip: a published farm build's Python at python/ (/opt/python), "
        "the bootstrap Lambda runs (/opt/bootstrap) and awslambdaric; with --requirements also "
        "deps-layer.zip (python/lib/pythonX.Y/site-packages).",
    )
    layer.add_argument(
        "--python",
        required=True,
        metavar="TARBALL|URL",
        help="a farm build's python-*.tar.gz (path or http(s) URL, manifest.json beside it)",
    )
    layer.add_argument(
        "--requirements", type=Path, metavar="FILE", help="requirements.txt (pip format, hashes allowed)"
    )
    deps = actions.add_parser(
        "deps",
        help="a dependencies layer from requirements.txt",
        description="deps-layer.zip (python/lib/pythonX.Y/site-packages) for the X.Y of --interpreter, "
        "a Python of the target's version on this machine that runs pip.",
    )
    deps.add_argument("--requirements", type=Path, required=True, metavar="FILE", help="requirements.txt")
    deps.add_argument(
        "--interpreter",
        type=interpreter_path,
        default=Path(sys.executable),
        metavar="PYTHON",
        help="the Python whose pip resolves and builds: a path, or a command on PATH such as "
        "python3.13 (default: this one)",
    )
    for command, arch_default in ((layer, "the Python's, else x86_64"), (deps, "x86_64")):
        _common_options(command, arch_default)
    layer.set_defaults(func=run_layer)
    deps.set_defaults(func=run_deps)


def interpreter_path(value: str) -> Path:
    """A path as given, or a bare command name (no /) looked up on PATH, as a shell would."""
    if "/" not in value and (found := shutil.which(value)):
        return Path(found)
    return Path(value)


def _common_options(parser: argparse.ArgumentParser, arch_default: str) -> None:
    parser.add_argument("--arch", help=f"the function's arch ({', '.join(ARCHES)}; default: {arch_default})")
    parser.add_argument(
        "--glibc",
        default=AL2023_GLIBC,
        help=f"the runtime's glibc (default {AL2023_GLIBC}: al2023); a Python, or a wheel compiled here, "
        "that needs a newer one is refused",
    )
    parser.add_argument("--index-url", metavar="URL", help="the package index (default: pip's configuration)")
    parser.add_argument(
        "--limit-bytes",
        type=whole_number(1, 10**12),
        default=LAMBDA_UNZIPPED_LIMIT_BYTES,
        metavar="N",
        help=f"the unzipped size the layers may take (default {LAMBDA_UNZIPPED_LIMIT_BYTES}, Lambda's limit "
        "for function code and layers together: lower it to leave room for the function)",
    )
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="where the zips and report go")


def _options(args: argparse.Namespace) -> LayerOptions:
    try:
        arch = canonical_arch(args.arch) if args.arch else None
        Target("3.13", arch or "x86_64", args.glibc)  # the arch and glibc, checked before any work
    except (TargetError, UnknownArchError) as error:
        raise UsageError(str(error)) from None
    if args.out.exists() and not args.out.is_dir():
        raise UsageError(f"--out {args.out} is not a directory")
    return LayerOptions(args.out, arch, args.glibc, args.index_url, args.limit_bytes)


def _print_outcome(build: LayerBuild) -> int:
    for layer in build.report["layers"]:
        for package in layer["packages"]:
            made = package.get("wheel") or package.get("reason", "")
            print(f"{layer['name']}: {package['name']} {package['version']}: {package['outcome']}: {made}")
        if "file" in layer:
            sizes = f"{layer['unzipped_bytes']} bytes unzipped, {layer['zipped_bytes']} zipped"
            print(f"wrote {layer['file']} ({sizes})")
    print(f"wrote {REPORT_FILE}")
    if build.failed:
        print(
            f"buildfarm lambda: error: could not make: {', '.join(build.failed)} "
            f"(reasons in {REPORT_FILE}; no layer written)",
            file=sys.stderr,
        )
        return 1
    return 0


def run_layer(args: argparse.Namespace) -> int:
    # A Python built on a newer glibc than the target's is refused before any work (layers.py).
    return _print_outcome(build_runtime_and_deps(args.python, args.requirements, _options(args)))


def run_deps(args: argparse.Namespace) -> int:
    options = _options(args)
    if not args.requirements.is_file():
        raise UsageError(f"requirements file {args.requirements} does not exist")
    version = interpreter_version(args.interpreter)
    return _print_outcome(build_deps_only(args.requirements, args.interpreter, version, options))
