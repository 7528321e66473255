"""Errors the command line reports as one line, each carrying its exit status (as
cibuildwheel's errors do), so no module needs the CLI package to raise them."""

from __future__ import annotations


class BuildfarmError(Exception):
    """A failure the user can act on: printed as "buildfarm COMMAND: error: MESSAGE"."""

    exit_code = 1


class UsageError(BuildfarmError):
    """Bad input: a value on the command line, in the environment or in the workflow input,
    named in the message. Exit status 2, as argparse uses for usage errors."""

    exit_code = 2
