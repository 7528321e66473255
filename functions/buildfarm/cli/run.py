"""`buildfarm run`: the whole farm on this machine (plan, build every cell, publish)."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import IO, Any

from buildfarm import clock
from buildfarm.attest.farm_signer import local_key_config
from buildfarm.attest.listed_files import missing_files, missing_files_error
from buildfarm.catalog import read_versions
from buildfarm.cli.arg_types import whole_number
from buildfarm.cli.plan import format_table, print_plan
from buildfarm.cli.store_errors import STORE_FAILURES, store_failure
from buildfarm.config import DEFAULT_STORE, ConfigError, FarmConfig
from buildfarm.errors import UsageError
from buildfarm.farm import CellProgress, RunReport, run_farm, runtime_cells_here
from buildfarm.layout import artifact_dir
from buildfarm.plan import new_execution_id, plan
from buildfarm.platforms import Registry, load_registry
from buildfarm.runners import RUNNER_CHOICES, host_arch, host_platform_id
from buildfarm.runners.base import check_driver_settings
from buildfarm.runtimes.cloud_items import farm_definitions
from buildfarm.runtimes.farm_cells import RuntimeRunPlan, plan_run_runtimes
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
    # `run` builds here: without --platforms/--arches this machine's own (not all enabled).
    _set_help(parser, "platforms", "platform ids (default: this machine's platform)")
    _set_help(
        parser, "arches", f"x86_64 (amd64), aarch64 (arm64) (default: this machine's arch, {host_arch()})"
    )
    parser.add_argument(
        "--store",
        metavar="DIR",
        help=f"the store directory, created if missing (default: $BUILDFARM_STORE, else {DEFAULT_STORE})",
    )
    parser.add_argument(
        "--runner",
        choices=RUNNER_CHOICES,
        default="auto",
        help="auto (default): host if it is the platform, else a chroot for Debian and Ubuntu "
        "(when their mirror answers), else docker",
    )
    parser.add_argument(
        "--jobs", type=whole_number(1, 64), default=1, metavar="N", help="cells built at once (default 1)"
    )
    parser.add_argument("--source-mirror", metavar="URL", help="python.org-shaped source mirror")
    parser.add_argument(
        "--optimization", choices=("pgo+lto", "none"), help="default: $BUILDFARM_OPTIMIZATION or pgo+lto"
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help='print the plan and build nothing (like the input\'s "dry_run": true); which runner '
        "could build each cell here is not checked",
    )
    parser.add_argument(
        "--no-runtimes",
        action="store_true",
        help="build only Python cells (default: then the runtime cells of this machine's platform "
        "and arch, if requested, defined in $BUILDFARM_RUNTIMES or the repository's runtimes/)",
    )
    parser.set_defaults(func=run)


def _set_help(parser: argparse.ArgumentParser, dest: str, text: str) -> None:
    """Replace the help of an option the shared matrix arguments added."""
    for action in parser._actions:
        if action.dest == dest:
            action.help = text
            return
    raise LookupError(f"no option {dest!r} to describe")


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    return f"{minutes}:{seconds:02d}"


def _amount(cell: CellProgress) -> str:
    """What the running step reported: "make 212/640 objects (33%)"."""
    count = f"{cell.done}/{cell.total}" if cell.total else str(cell.done)
    percent = f"({min(100, cell.done * 100 // cell.total)}%)" if cell.total else ""
    return " ".join(part for part in (cell.step, count, cell.unit, percent) if part)


def _bar(cell: CellProgress, width: int = 20) -> str:
    if not cell.total:
        return ""
    filled = min(width, cell.done * width // cell.total)
    return " [" + "#" * filled + "-" * (width - filled) + "]"


def describe(cell: CellProgress) -> str:
    """A cell's state in words: "building (host): make 212/640 objects (33%)"."""
    if cell.state == "building":
        what = f"building ({cell.runner})"
        if cell.step:
            return f"{what}: {_amount(cell)}"
        return what + (f": {cell.phase} done" if cell.phase else "")
    what = str(cell.state)
    if cell.state in ("built", "failed", "published") and cell.started is not None:
        what += f" after {_clock(cell.elapsed)}"
    if cell.detail and cell.state == "failed":
        what += f" - {cell.detail}"
    return what


class ProgressPrinter:
    """Each cell's progress. A line for every change of state and every finished phase; the
    running step's progress (objects compiled, PGO tests run) on a terminal as a live block,
    one line per building cell redrawn in place, elsewhere (logs, pipes) as a plain line at
    most every QUIET_SECONDS per cell."""

    QUIET_SECONDS = 30.0

    def __init__(
        self,
        stream: IO[str] | None = None,
        *,
        live: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = sys.stdout if stream is None else stream
        self.live = self.stream.isatty() if live is None else live
        self.clock = clock
        self.start = clock()
        self.lock = threading.Lock()
        self.seen: dict[str, tuple[str, str]] = {}  # cell -> (state, last finished phase)
        self.printed: dict[str, float] = {}  # cell -> when its last line was printed
        self.building: dict[str, CellProgress] = {}  # the live block, in start order
        self.drawn = 0  # lines of the live block on the screen

    def __call__(self, cell: CellProgress) -> None:
        with self.lock:
            now = self.clock()
            changed = self.seen.get(cell.cell) != (cell.state, cell.phase)
            self.seen[cell.cell] = (cell.state, cell.phase)
            if self.live:
                self._redraw(cell, changed)
            elif changed or (cell.step and now - self.printed.get(cell.cell, now) >= self.QUIET_SECONDS):
                self._line(cell, now)
            self.stream.flush()

    def _line(self, cell: CellProgress, now: float) -> None:
        self.printed[cell.cell] = now
        prefix = f"[{_clock(now - self.start)}] {cell.cell} build {cell.build}"
        print(f"{prefix}: {describe(cell)}", file=self.stream)

    def _redraw(self, cell: CellProgress, changed: bool) -> None:
        if self.drawn:
            # Up to the block's first line, and clear from there to the end of the screen.
            self.stream.write(f"\x1b[{self.drawn}A\r\x1b[J")
        if changed and not (cell.state == "building" and cell.phase):
            self._line(cell, self.clock())  # states stay in the scrollback; phases live only
        if cell.state == "building":
            self.building[cell.cell] = cell
        else:
            self.building.pop(cell.cell, None)
        width = max(40, shutil.get_terminal_size().columns - 1)
        for active in self.building.values():
            line = f"  {active.cell} build {active.build}: {describe(active)}{_bar(active)}"
            elapsed = (active.finished or self.clock()) - (active.started or self.clock())
            print(f"{line}  {_clock(elapsed)}"[:width], file=self.stream)
        self.drawn = len(self.building)


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
    if report.runtimes is not None:
        results = {"skip": "skipped", "wait": "waiting"}
        rows += [[cell, build, "-", results[action], "-", why] for cell, build, action, why in
                 _runtime_rows(report.runtimes, dry_run=False)]  # fmt: skip
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
        config = FarmConfig.from_env({**os.environ, **overrides}, store=args.store)
        raw = raw_input_from_args(args)
    except (ConfigError, InputError) as error:
        message = str(error)
        if args.source_mirror and message.startswith("BUILDFARM_SOURCE_MIRROR:"):
            message = "--source-mirror" + message.removeprefix("BUILDFARM_SOURCE_MIRROR")  # the flag's value
        raise UsageError(message) from None
    check_driver_settings(os.environ)  # before any cell is claimed
    _check_local_mirror(config.source_mirror, "--source-mirror" if args.source_mirror else None)

    location = config.store
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


def _check_local_mirror(mirror: str, flag: str | None) -> None:
    """A file:// source mirror must be a directory here, before any cell is claimed: otherwise
    every cell would fail at its fetch (e.g. scripts/setup ran without ../shared/cpython-src)."""
    if mirror.startswith("file://") and not Path(mirror.removeprefix("file://")).is_dir():
        raise UsageError(
            f"{flag or 'BUILDFARM_SOURCE_MIRROR'} {mirror}: no such directory (scripts/setup makes "
            ".cache/mirror from ../shared/cpython-src; without a mirror, builds fetch from python.org)"
        )


def run(args: argparse.Namespace) -> int:

    registry = load_registry()
    config, raw, store = _setup(args, registry)
    new_store, finished = not store.root.exists(), False
    log_dir: Path | None = None
    try:
        request = parse_workflow_input(raw, config, registry)
        definitions = None if args.no_runtimes else farm_definitions()
        if args.dry_run or request.dry_run:
            # Before any runner is chosen or the store is touched: nothing claimed or written.
            execution_id = new_execution_id()
            if definitions:
                where = runtime_cells_here(request.platforms or [], request.arches or [], registry)
                _print_runtimes(plan_run_runtimes(
                    store, definitions, where, execution_id=execution_id, now=clock.now(),
                    ttl_seconds=config.claim_ttl_seconds, dry_run=True,
                ))  # fmt: skip
            return print_plan(plan({**raw, "dry_run": True}, store, config, execution_id), store)
        store.create()  # `run` makes its store; the read-only commands refuse a missing one
        config = _with_signing_key(config, store)
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
            runtimes=definitions,
        )
        finished = True
    except InputError as error:
        raise UsageError(str(error)) from None
    except STORE_FAILURES as error:  # exit 2, as `reindex` of the same store
        raise store_failure(store.location, error) from None
    finally:
        # Nothing empty is left behind: a log directory no build wrote to, and a store this
        # run made but did not get to write to (a later `status` then says it does not exist).
        _remove_if_empty(log_dir)
        if new_store and not finished:
            _remove_if_empty(store.root)
    status = _report(report)
    _check_skipped_builds(store, report)
    return status


def _check_skipped_builds(store: LocalStore, report: RunReport) -> None:
    """The published cells the run skipped still hold every file versions.json lists for them
    (one listing per version, nothing read: `buildfarm verify` hashes them); else the error
    `reindex` and `status` give, naming each cell and key, exit 2."""
    published = {
        artifact_dir(*skipped.cell.split("/"), skipped.build)
        for skipped in (report.plan.skipped if report.plan else [])
        if skipped.reason == "published"
    }
    if not published:
        return
    try:
        missing = missing_files(store, read_versions(store)[0], published.__contains__)
    except STORE_FAILURES as error:
        raise store_failure(store.location, error) from None
    if missing:
        raise store_failure(store.location, missing_files_error(missing))


def _remove_if_empty(directory: Path | None) -> None:
    """Remove a directory the run made if it holds nothing (never anything it holds)."""
    if directory is not None:
        with suppress(OSError):  # not empty, or gone
            directory.rmdir()


def _with_signing_key(config: FarmConfig, store: LocalStore) -> FarmConfig:
    """The run signs with the configured KMS key, else the key file (created when absent,
    outside the store, and said so)."""
    config, message = local_key_config(config, Path(store.location))
    if message:
        print(f"buildfarm run: {message}", flush=True)
    return config


def _runtime_rows(runtimes: RuntimeRunPlan, *, dry_run: bool) -> list[list[str]]:
    """The runtime cells not in the run's cells: to build (dry run), held, waiting, current."""
    rows = [[c.name, str(c.build), "build", c.item.reason] for c in runtimes.claimed] if dry_run else []
    rows += [[cell, str(build), "skip", f"claimed by {holder}"] for cell, build, holder in runtimes.held]
    rows += [["/".join(cell), "-", "wait", why] for cell, why in runtimes.plan.waiting]
    rows += [["/".join(cell), "-", "skip", "current"] for cell in runtimes.plan.current]
    return rows + [[name, "-", "skip", why] for name, why in runtimes.unresolved.items()]


def _print_runtimes(runtimes: RuntimeRunPlan) -> None:
    """A dry run's runtime cells (they are planned after the Python cells publish)."""
    print(f"runtimes: {len(runtimes.claimed)} to build, {len(runtimes.plan.waiting)} waiting for "
          f"their Python, {len(runtimes.plan.current)} current")  # fmt: skip
    if rows := _runtime_rows(runtimes, dry_run=True):
        print(format_table(rows, ["RUNTIME CELL", "BUILD", "ACTION", "WHY"]))
    print()


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
    published = (len(report.published.published) if report.published else 0) + len(report.published_runtimes)
    print(f"\n{published} published, {failed} failed, {len(report.plan.skipped)} skipped")
    if report.interrupted:
        return 130
    return 1 if failed else 0
