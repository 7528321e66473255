"""`buildfarm run`: the whole farm on this machine (plan, build every cell, publish)."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from buildfarm.cli.plan import format_table, print_plan
from buildfarm.config import DEFAULT_STORE, ConfigError, FarmConfig, resolve_store_location
from buildfarm.errors import UsageError
from buildfarm.farm import CellProgress, RunReport, run_farm
from buildfarm.plan import new_execution_id, plan
from buildfarm.platforms import Registry, load_registry
from buildfarm.runners.local import host_arch, host_platform_id
from buildfarm.store import LocalStore, StoreError
from buildfarm.workflow_input import (
    InputError,
    add_matrix_arguments,
    parse_workflow_input,
    raw_input_from_args,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run",
        help="plan, build and publish on this machine",
        description=(
            "The farm's workflow on this machine: plan the cells (the same planner as the cloud), "
            "build them with local runners, publish them into a local store. Without --platforms "
            "and --arches it builds this machine's own platform and arch."
        ),
    )
    add_matrix_arguments(parser)
    parser.add_argument("--store", metavar="DIR", help=f"the store directory (default: {DEFAULT_STORE})")
    parser.add_argument(
        "--runner",
        choices=("auto", "host", "chroot", "docker"),
        default="auto",
        help="auto (default): host if it is the platform, else a chroot for Debian, else docker",
    )
    parser.add_argument(
        "--jobs", type=_positive, default=1, metavar="N", help="cells built at once (default 1)"
    )
    parser.add_argument("--source-mirror", metavar="URL", help="python.org-shaped source mirror")
    parser.add_argument(
        "--optimization", choices=("pgo+lto", "none"), help="default: $BUILDFARM_OPTIMIZATION or pgo+lto"
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help='print the plan and build nothing (like the input\'s "dry_run": true)',
    )
    parser.set_defaults(func=run)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 1 <= value <= 64:
        raise argparse.ArgumentTypeError(f"must be 1..64, got {value}")
    return value


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    return f"{minutes}:{seconds:02d}"


class ProgressPrinter:
    """One line per change of a cell (queued, building: phase, built, published, failed)."""

    def __init__(self, stream=sys.stdout) -> None:
        self.stream = stream
        self.start = time.monotonic()
        self.lock = threading.Lock()

    def __call__(self, cell: CellProgress) -> None:
        if cell.state == "building":
            what = f"building ({cell.runner})" + (f": {cell.phase} done" if cell.phase else "")
        else:
            what = cell.state
        if cell.state in ("built", "failed", "published") and cell.started is not None:
            what += f" after {_clock(cell.elapsed)}"
        if cell.detail and cell.state == "failed":
            what += f" - {cell.detail}"
        with self.lock:
            print(
                f"[{_clock(time.monotonic() - self.start)}] {cell.cell} build {cell.build}: {what}",
                file=self.stream,
                flush=True,
            )


def _summary(report: RunReport) -> str:
    rows = [
        [c.cell, str(c.build), c.runner, c.state, _clock(c.elapsed) if c.started else "-", c.detail]
        for c in report.cells.values()
    ]
    if report.plan is not None:
        rows += [[s.cell, str(s.build), "-", "skipped", "-", s.detail] for s in report.plan.skipped]
    rows += [
        [where, "-", "-", "skipped", "-", f"no runner here: {why}"]
        for where, why in report.unbuildable.items()
    ]
    return (
        format_table(rows, ["CELL", "BUILD", "RUNNER", "RESULT", "TIME", "DETAIL"]) if rows else "(nothing)"
    )


def _setup(args: argparse.Namespace, registry: Registry) -> tuple[FarmConfig, dict[str, Any], LocalStore]:
    """The configuration, the raw request (this machine's platform and arch unless named) and
    the local store, from the command line."""

    overrides: dict[str, str] = {}
    if args.source_mirror:
        overrides["BUILDFARM_SOURCE_MIRROR"] = args.source_mirror
    if args.optimization:
        overrides["BUILDFARM_OPTIMIZATION"] = args.optimization
    try:
        config = FarmConfig.from_env({**os.environ, **overrides})
        raw = raw_input_from_args(args)
    except (ConfigError, InputError) as error:
        raise UsageError(str(error)) from None

    location = resolve_store_location(args.store)
    if location.startswith("s3://"):
        raise UsageError(
            f"--store {location}: `run` publishes into a local directory; use `trigger` for the cloud"
        )
    if "platforms" not in raw:
        here = host_platform_id(registry)
        if here is None:
            raise UsageError("this machine is not a registered platform: pass --platforms")
        raw["platforms"] = [here]
    raw.setdefault("arches", [host_arch()])
    try:
        store = LocalStore(Path(location))
    except StoreError as error:
        raise UsageError(str(error)) from None
    return config.model_copy(update={"store": store.location}), raw, store


def run(args: argparse.Namespace) -> int:

    registry = load_registry()
    config, raw, store = _setup(args, registry)
    try:
        request = parse_workflow_input(raw, config, registry)
        if args.dry_run or request.dry_run:
            # Before any runner is chosen or the store is touched: nothing claimed or written.
            return print_plan(plan({**raw, "dry_run": True}, store, config, new_execution_id()), store)
        log_dir = Path(tempfile.mkdtemp(prefix="buildfarm-run-"))
        print(f"buildfarm run: store {store.location}, logs {log_dir}", flush=True)
        report = run_farm(
            raw,
            store,
            config,
            runner=args.runner,
            jobs=args.jobs,
            log_dir=log_dir,
            listener=ProgressPrinter(),
        )
    except InputError as error:
        raise UsageError(str(error)) from None
    except StoreError as error:
        raise UsageError(f"store {store.location}: {error}") from None
    return _report(report)


def _report(report: RunReport) -> int:
    """Print what the run did; the exit status: 0 all good, 1 a cell failed, 130 interrupted."""
    for where, name in report.runners.items():
        print(f"  {where}: {name} runner")
    if report.recovered:
        print(f"  recovered from an interrupted run: {', '.join(report.recovered)}")
    print()
    print(_summary(report))
    if report.plan is None:
        print("\nnothing here can build the requested platforms", file=sys.stderr)
        return 1
    failed = len(report.failed)
    published = len(report.published.published) if report.published else 0
    print(f"\n{published} published, {failed} failed, {len(report.plan.skipped)} skipped")
    if report.interrupted:
        return 130
    return 1 if failed else 0
