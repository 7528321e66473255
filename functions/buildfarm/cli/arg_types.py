"""argparse types for numbers on the command line: ASCII digits only, whole string, in range,
so a bad value is refused with its name before anything starts (int() and float() would take
"٣", " 3", "1_0", "nan" or "-5")."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable

from buildfarm.layout import BUILD_NUMBER

_WHOLE_NUMBER = re.compile(r"[0-9]{1,12}")
_SECONDS = re.compile(r"[0-9]{1,6}(\.[0-9]{1,3})?")


def build_number(text: str) -> int:
    """A build number as the store spells it (layout.BUILD_NUMBER: 1-999999999, no sign or zeros)."""
    if not BUILD_NUMBER.fullmatch(text):
        raise argparse.ArgumentTypeError(f"invalid build number {text!r} (1 to 999999999, no leading zeros)")
    return int(text)


def whole_number(low: int, high: int) -> Callable[[str], int]:
    """A type for a whole number from low to high."""

    def parse(text: str) -> int:
        if not _WHOLE_NUMBER.fullmatch(text) or not low <= int(text) <= high:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number from {low} to {high}")
        return int(text)

    return parse


def seconds(low: float, high: float) -> Callable[[str], float]:
    """A type for a number of seconds from low to high (up to 3 decimals)."""

    def parse(text: str) -> float:
        if not _SECONDS.fullmatch(text) or not low <= float(text) <= high:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds from {low:g} to {high:g}")
        return float(text)

    return parse
