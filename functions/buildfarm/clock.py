"""The farm's clock: the one place that reads the time.

Domain functions take `now` (an aware UTC datetime) as an argument; the entry points (the Lambda
handlers, the CLI commands) and the domain's `now=None` defaults read it from `now()`, the
process's clock. It is the system clock unless a test runs under `using(fixed_clock(moment))`,
which makes every handler and default see the same, chosen moment (no test depends on the day).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """Something that answers the current time as an aware UTC datetime."""

    def __call__(self) -> datetime: ...


def system_clock() -> datetime:
    """The machine's time, in UTC."""
    return datetime.now(UTC)


def fixed_clock(moment: datetime) -> Clock:
    """A clock that always answers `moment` (aware, UTC)."""
    if moment.tzinfo is None or moment.utcoffset() != timedelta(0):
        raise ValueError(f"a clock answers aware UTC times, not {moment.isoformat()}")
    return lambda: moment


_current: Clock = system_clock


def now() -> datetime:
    """The current time from the process's clock."""
    return _current()


@contextmanager
def using(clock: Clock) -> Iterator[Clock]:
    """Run the block with `clock` as the process's clock (every thread sees it), then restore."""
    global _current
    previous, _current = _current, clock
    try:
        yield clock
    finally:
        _current = previous
