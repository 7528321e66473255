"""argparse types for numbers on the command line: ASCII digits only, whole string, in range,
so a bad value is refused with its name before anything starts (int() and float() would take
"٣", " 3", "1_0", "nan" or "-5"); and for an arch, which takes its aliases (amd64, arm64)."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from typing import TypeVar

from buildfarm.layout import BUILD_NUMBER, EXECUTION_ID
from buildfarm.platforms import UnknownArchError, canonical_arch

_WHOLE_NUMBER = re.compile(r"[0-9]{1,12}")
_SECONDS = re.compile(r"[0-9]{1,6}(\.[0-9]{1,3})?")
Number = TypeVar("Number", int, float)


def build_number(text: str) -> int:
    """A build number as the store spells it (layout.BUILD_NUMBER: 1-999999999, no sign or zeros)."""
    if not BUILD_NUMBER.fullmatch(text):
        raise argparse.ArgumentTypeError(f"invalid build number {text!r} (1 to 999999999, no leading zeros)")
    return int(text)


def execution_id(text: str) -> str:
    """An execution's id as a farm's plan writes it (layout.EXECUTION_ID)."""
    if not EXECUTION_ID.fullmatch(text):
        raise argparse.ArgumentTypeError(f"invalid execution id {text!r} (1 to 80 letters, digits and . _ -)")
    return text


def arch(text: str) -> str:
    """An arch as the registry names it, given as itself or its alias (amd64 -> x86_64, arm64
    -> aarch64), as everywhere an arch is read (platforms.ARCH_ALIASES)."""
    try:
        return canonical_arch(text)
    except UnknownArchError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def whole_number(low: int, high: int) -> Callable[[str], int]:
    """A type for a whole number from low to high."""
    return _bounded(_WHOLE_NUMBER, int, low, high, "a whole number")


def seconds(low: float, high: float) -> Callable[[str], float]:
    """A type for a number of seconds from low to high (up to 3 decimals)."""
    return _bounded(_SECONDS, float, low, high, "a number of seconds")


def _bounded(
    pattern: re.Pattern[str], convert: Callable[[str], Number], low: Number, high: Number, what: str
) -> Callable[[str], Number]:
    def parse(text: str) -> Number:
        if not pattern.fullmatch(text) or not low <= convert(text) <= high:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what} from {low} to {high}")
        return convert(text)

    return parse
