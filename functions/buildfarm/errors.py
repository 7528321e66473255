"""Errors the command line reports as one line, each carrying its exit status (as
cibuildwheel's errors do), so no module needs the CLI package to raise them; and first_error,
the one line every module makes of a pydantic ValidationError."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError
    from pydantic_core import ErrorDetails


class BuildfarmError(Exception):
    """A failure the user can act on: printed as "buildfarm COMMAND: error: MESSAGE"."""

    exit_code = 1


class UsageError(BuildfarmError):
    """Bad input: a value on the command line, in the environment or in the workflow input,
    named in the message. Exit status 2, as argparse uses for usage errors."""

    exit_code = 2


VALUE_ERROR = "Value error, "
"""What pydantic puts before the message of a ValueError that a validator raised."""


def first_error(
    error: ValidationError,
    *,
    under: str = "",
    whole: str = "",
    sep: str = ".",
    brackets: bool = False,
    plain: bool = False,
    describe: Callable[[ErrorDetails], str] | None = None,
    count_rest: bool = False,
) -> str:
    """A ValidationError's first error as one line, "where: what".

    where: the error's location, its parts joined with `sep` ("artifacts.0.sha256",
    "keys/0/fingerprint") or, with `brackets`, its list indexes bracketed ("versions[1]", as the
    writer of a JSON input names them); led by `under`, the field of a larger document that the
    value validated is. An error of the whole value has no location: where is then `whole`, or
    is left out (with its ": ") when that is "".
    what: pydantic's message; with `plain`, without the VALUE_ERROR before a validator's own;
    describe(the error), where the caller words it itself (e.g. with the bad value). With
    `count_rest`, followed by " (and N more)" when there are N more errors."""
    errors = error.errors(include_url=False)
    first = errors[0]
    where = ""
    for part in (under, *first["loc"]) if under else first["loc"]:
        where += f"[{part}]" if brackets and isinstance(part, int) else f"{sep if where else ''}{part}"
    where = where or whole
    message = describe(first) if describe else str(first["msg"])
    if plain:
        message = message.removeprefix(VALUE_ERROR)
    if count_rest and len(errors) > 1:
        message += f" (and {len(errors) - 1} more)"
    return f"{where}: {message}" if where else message
