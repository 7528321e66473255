"""`buildfarm` command line: one subcommand module per concern, each with register()."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from buildfarm import __version__
from buildfarm.aws_errors import explain_aws_error, honour_aws_region, is_aws_error
from buildfarm.errors import BuildfarmError, UsageError
from buildfarm.suggest import SuggestingArgumentParser

# Each module defines register(subparsers) and sets `func` on its parser(s);
# func(args) returns the exit status.
SUBCOMMAND_MODULES = (
    "buildfarm.cli.build",  # build
    "buildfarm.cli.images",  # images build|import-base
    "buildfarm.cli.plan",  # plan, status
    "buildfarm.cli.run",  # run
    "buildfarm.cli.trigger",  # trigger
    "buildfarm.cli.store_cmds",  # reindex, serve
    "buildfarm.cli.discover",  # releases, platforms
    "buildfarm.cli.attest_cmds",  # keys, verify
    "buildfarm.cli.runtime_cmds",  # runtime
    "buildfarm.cli.lambda_cmds",  # lambda
)


# The subcommands' name for a usage error (exit 2).
CliError = UsageError


def build_parser() -> argparse.ArgumentParser:
    # Suggests the closest option, subcommand or choice for a mistyped one (subparsers inherit it).
    parser = SuggestingArgumentParser(
        prog="buildfarm",
        description="Build, test, package and publish CPython for every platform and arch.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        try:
            return _run(argv)
        finally:  # (also after --help's SystemExit) a reader that is gone shows here, not at exit
            sys.stdout.flush()
    except BrokenPipeError:
        return _stdout_closed()


def _stdout_closed() -> int:
    """The reader of stdout went away (`buildfarm platforms | head -1`): stop quietly with
    status 1, as https://docs.python.org/3/library/signal.html#note-on-sigpipe recommends.
    stdout now goes to /dev/null, so Python's flush at exit cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is not a file (replaced by a caller): nothing to redirect
        pass
    return 1


def _run(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with honour_aws_region():
            return int(args.func(args) or 0)
    except BuildfarmError as error:
        print(f"buildfarm {args.command}: error: {error}", file=sys.stderr)
        return error.exit_code
    except BrokenPipeError:
        raise
    except Exception as error:
        # The last resort for an AWS call no subcommand translated: one line, not a traceback.
        if not is_aws_error(error):
            raise
        explained = explain_aws_error(error, region_option=hasattr(args, "region"))
        print(f"buildfarm {args.command}: error: {explained}", file=sys.stderr)
        return explained.exit_code
    except KeyboardInterrupt:
        print(f"buildfarm {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
