"""How the status page (status_page) writes sizes and times: its Jinja2 filters and helpers."""

from __future__ import annotations

import re
from datetime import UTC, datetime

ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def human_size(size: float) -> str:
    """1234567 -> '1.2 MB' (whole bytes below 1 KB; GB is the largest unit)."""
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size} B"


def day_of(moment: str) -> str:
    """'2026-11-22T09:00:00Z' -> '2026-11-22'; anything else as it is."""
    return moment[:10] if ISO_DATE.fullmatch(moment[:10]) else moment


def utc_minute(moment: str) -> str:
    """'2026-11-22T09:55:00Z' -> '2026-11-22 09:55 UTC' (a row's date, then the time in UTC);
    anything but an ISO time with its offset as it is."""
    try:
        parsed = datetime.fromisoformat(moment)
    except ValueError:
        return moment
    return f"{parsed.astimezone(UTC):%Y-%m-%d %H:%M} UTC" if parsed.tzinfo else moment
