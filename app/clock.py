"""Time as the service writes it: UTC, ISO 8601, milliseconds, with `Z`."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_text(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def now_text() -> str:
    return utc_text(datetime.now(UTC))


def epoch(text: str) -> float:
    """Seconds since the epoch of a time written by `utc_text` (or any ISO 8601 with offset)."""
    return datetime.fromisoformat(text).timestamp()
