"""Time as the service writes it: UTC, ISO 8601, milliseconds, with `Z`."""

from __future__ import annotations

import functools
import time
from datetime import UTC, datetime


def utc_text(moment: datetime) -> str:
    """`2026-11-29T10:00:07.134Z`, written field by field: `isoformat` + `replace` took 20k
    instructions against 14k, and every report has two dates and every envelope one."""
    m = moment.astimezone(UTC)
    # %-formatting: an f-string with format specs costs more than `isoformat` did.
    return "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ" % (  # noqa: UP031
        m.year, m.month, m.day, m.hour, m.minute, m.second, m.microsecond // 1000)


def now_text() -> str:
    """`utc_text` of now. Every envelope gets one: the second's text is shared by the requests of
    that second, so only the milliseconds are written each time (0.4 us against 1.25)."""
    now = time.time()
    second = int(now)
    return f"{_second_text(second)}.{int((now - second) * 1000):03d}Z"


@functools.lru_cache(maxsize=4)
def _second_text(second: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


def epoch(text: str) -> float:
    """Seconds since the epoch of a time written by `utc_text` (or any ISO 8601 with offset)."""
    return datetime.fromisoformat(text).timestamp()
