"""Time as the service writes it: UTC, ISO 8601, milliseconds, with `Z`."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_text(moment: datetime) -> str:
    """`2026-11-29T10:00:07.134Z`, written field by field: `isoformat` + `replace` took 20k
    instructions against 14k, and every report has two dates and every envelope one."""
    m = moment.astimezone(UTC)
    # %-formatting: an f-string with format specs costs more than `isoformat` did.
    return "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ" % (  # noqa: UP031
        m.year, m.month, m.day, m.hour, m.minute, m.second, m.microsecond // 1000)


def now_text() -> str:
    return utc_text(datetime.now(UTC))


def epoch(text: str) -> float:
    """Seconds since the epoch of a time written by `utc_text` (or any ISO 8601 with offset)."""
    return datetime.fromisoformat(text).timestamp()
