"""How figures look on the pages: Jinja filters (times, numbers, durations) and the inline-SVG
shapes, computed here so templates stay plain. No inline styles anywhere (the CSP forbids
them): sizes are SVG attributes, colours CSS classes defined once in dashboard.css.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from markupsafe import Markup, escape

# Status groups in the order a message moves through them; each has a CSS class g-<NAME>.
GROUP_ORDER = ("ACCEPTED", "PENDING", "DELIVERED", "UNDELIVERABLE", "EXPIRED", "REJECTED")
CHART_WIDTH, CHART_HEIGHT = 1440, 200


def utc(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, UTC)
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)


def time_tag(value: Any) -> Markup:
    """`<time>` in UTC; the page's script rewrites the text in the viewer's zone, UTC in the title."""
    moment = utc(value)
    if moment is None:
        return Markup('<span class="muted">—</span>')
    iso = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    text = moment.strftime("%Y-%m-%d %H:%M:%S UTC")
    return Markup(f'<time datetime="{iso}" title="{text}">{text}</time>')


def number(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.1f}"
    return f"{int(value):,}"


def share(part: Any, whole: Any) -> str:
    if not whole:
        return "—"
    percent = 100 * (part or 0) / whole
    return f"{percent:.1f} %" if percent < 99.95 or part == whole else "99.9 %"


def duration(seconds: float | None) -> str:
    """A histogram bound as a person reads it: '≤ 10 s', '≤ 2 min', '≤ 6 h'."""
    if seconds is None:
        return "—"
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"≤ {seconds / size:g} {unit}"
    return f"≤ {seconds:g} s" if seconds >= 1 else f"≤ {seconds * 1000:g} ms"


def bucket_label(bound: str) -> str:
    return "longer" if bound == "inf" else duration(float(bound))


def money(amount: str | Decimal) -> str:
    value = Decimal(amount)
    return f"{value:,.4f}".rstrip("0").rstrip(".") if value else "0"


def group_bar(by_group: dict[str, int]) -> list[dict[str, Any]]:
    """Segments of one stacked bar (x, width in percent of 100), in the groups' order."""
    total = sum(by_group.values())
    segments, x = [], 0.0
    names = [g for g in GROUP_ORDER if g in by_group] + sorted(set(by_group) - set(GROUP_ORDER))
    for name in names:
        if not by_group[name] or not total:
            continue
        width = 100 * by_group[name] / total
        segments.append({"group": name, "x": round(x, 3), "width": round(width, 3), "count": by_group[name]})
        x += width
    return segments


def bars(rows: list[tuple[str, int]]) -> list[dict[str, Any]]:
    """Horizontal bars scaled to the largest row; empty rows before the first and after the last
    counted one are left out, but one on each side (the shape's edges)."""
    counted = [i for i, (_, n) in enumerate(rows) if n]
    if counted:
        rows = rows[max(0, counted[0] - 1) : counted[-1] + 2]
    top = max((n for _, n in rows), default=0)
    return [{"label": label, "count": n, "width": round(100 * n / top, 3) if top else 0} for label, n in rows]


RANGES = {"1h": 60, "6h": 360, "24h": 1440}  # chart spans, in minutes
COLUMN_MINUTES = {"1h": 1, "6h": 3, "24h": 15}  # minutes per column: at most 120 columns


def chart_range(wanted: str | None, reports: list[int], inbound: list[int]) -> str:
    """The span asked for, else the shortest that shows all of the last 24 h's traffic: a
    campaign of a few minutes is a shape, not a hairline at the right edge."""
    if wanted in RANGES:
        return wanted
    busy = [i for i, (a, b) in enumerate(zip(reports, inbound, strict=True)) if a or b]
    span = len(reports) - busy[0] if busy else len(reports)
    return next(name for name, minutes in RANGES.items() if minutes >= span or name == "24h")


def chart(reports: list[int], inbound: list[int], span: str = "24h") -> dict[str, Any]:
    """Columns of the per-minute chart over the last `span`, in a CHART_WIDTH x CHART_HEIGHT box.
    At most ~120 columns: over 6 h or 24 h a column is 3 or 15 minutes, at their mean per minute."""
    minutes, per = RANGES[span], COLUMN_MINUTES[span]

    def binned(series: list[int]) -> list[float]:
        tail = series[-minutes:]
        return [sum(tail[i : i + per]) / per for i in range(0, len(tail), per)]

    reports_bins, inbound_bins = binned(reports), binned(inbound)
    top = _nice(max([*reports_bins, *inbound_bins, 1]))
    slot = CHART_WIDTH / len(reports_bins)

    def columns(values: list[float], offset: float, share: float) -> list[dict[str, float]]:
        return [{"x": round((i + offset) * slot, 2), "width": round(share * slot, 2),
                 "y": round(CHART_HEIGHT * (1 - v / top), 2), "height": round(CHART_HEIGHT * v / top, 2)}
                for i, v in enumerate(values) if v]

    hours = minutes / 60
    ticks = [f"−{hours * (4 - i) / 4:g} h" if hours > 1 else f"−{minutes * (4 - i) // 4} min"
             for i in range(4)]
    return {"width": CHART_WIDTH, "height": CHART_HEIGHT, "top": top, "span": span, "per": per,
            "reports": columns(reports_bins, 0.12, 0.5), "inbound": columns(inbound_bins, 0.62, 0.26),
            "ticks": [*ticks, "now"], "grid": [round(CHART_HEIGHT * f, 2) for f in (0.25, 0.5, 0.75)]}


def _nice(n: int) -> int:
    """The next 1, 2 or 5 times a power of ten at or above n: a readable axis top."""
    scale = 1
    while True:
        for step in (1, 2, 5):
            if step * scale >= n:
                return step * scale
        scale *= 10


def pretty(value: Any) -> str:
    import json

    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def register(app: Any) -> None:
    app.add_template_filter(time_tag, "time")
    app.add_template_filter(number, "num")
    app.add_template_filter(duration, "dur")
    app.add_template_filter(bucket_label, "bucket")
    app.add_template_filter(money, "money")
    app.add_template_filter(pretty, "pretty")
    app.add_template_global(share, "share")
    app.add_template_global(group_bar, "present_segments")
    app.add_template_global(escape, "escape")
