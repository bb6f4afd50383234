"""The dashboard's pages (GET). Each reads aggregates or a bounded page of an index: the render
cost does not grow with the number of stored messages (bench/dashboard.py measures it)."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterator
from typing import Any

from flask import Response, abort, current_app, render_template, request, stream_with_context

from app import dlq, keys, quarantine, store, store_dashboard
from app.backlog import backlog
from app.codes import STATUS_GROUPS
from app.connection import get_redis
from app.dashboard import bp, present
from app.keys import INDEX_BULK, MESSAGE, QUARANTINE
from app.mo_template import Template

PAGE = 25
MESSAGES_SHOWN = (20, 100)  # a bulk's messages: at first, and when asked for more
CSV_COLUMNS = ("messageId", "to", "from", "group", "status", "error", "sentAt", "doneAt", "price",
               "currency", "smsCount", "callbackData", "source")


def ingest_urls() -> dict[str, str]:
    """The URLs to paste at Infobip; with the real token only in development mode (make run)."""
    base = request.host_url.rstrip("/")
    config = current_app.config
    token = config["WEBHOOK_TOKEN"] if config["DEV_MODE"] and config["WEBHOOK_TOKEN"] else "<WEBHOOK_TOKEN>"
    auth = f"?token={token}" if config["WEBHOOK_TOKEN"] or not config["WEBHOOK_BASIC_USER"] else ""
    if config["WEBHOOK_BASIC_USER"] and not config["WEBHOOK_TOKEN"]:
        scheme, _, rest = base.partition("://")
        base = f"{scheme}://<user>:<password>@{rest}"
    return {"dlr": f"{base}/infobip/dlr{auth}", "mo": Template.paste_url(f"{base}/infobip/mo{auth}")}


def overview_figures() -> dict[str, Any]:
    r = get_redis()
    routes = current_app.extensions["routes"]
    day = store_dashboard.last_day(r, language=current_app.config["CODE_DESCRIPTIONS"])
    consumers = dlq.consumer_figures(r, routes)["consumers"]
    answer = store_dashboard.answer_times(r, [n for n, c in consumers.items() if c["kind"] == "http"])
    messages = day["totals"]["messages"]
    span = present.chart_range(request.args.get("range"), day["reports"], day["inbound"])
    return {
        "day": day,
        "chart": present.chart(day["reports"], day["inbound"], span),
        "ranges": list(present.RANGES),
        "funnel": [{"group": g, "count": day["groups"].get(g, 0), "width": _width(day["groups"].get(g, 0),
                                                                                  messages)}
                   for g in present.GROUP_ORDER],
        "waiting": backlog(r, current_app.config["DRAIN_LANES"]),
        "consumers": consumers,
        "answer": answer,
        "reconciliation": store_dashboard.reconciliation(r, current_app.config),
        **store_dashboard.connections(r, current_app.config),
        "bulks": store_dashboard.bulks_page(r, 0, 5)[0],
        "now": time.time(),
        "urls": ingest_urls(),
    }


def found(value: Any, description: str) -> Any:
    """The value, or a 404 page saying what is missing."""
    if value is None:
        abort(404, description=description)
    return value


def _width(part: int, whole: int) -> float:
    return round(min(100.0, 100 * part / whole), 3) if whole else 0.0


@bp.get("/")
def overview() -> str:
    return render_template("overview.html", **overview_figures())


@bp.get("/overview/live")
def overview_live() -> Response:
    """The overview's changing part alone, fetched by dashboard.js every few seconds."""
    response = Response(render_template("_overview_live.html", **overview_figures()))
    response.headers["X-Dashboard-Fragment"] = "overview"
    return response


@bp.get("/bulks")
def bulks() -> str:
    page = _int_arg("page", 1)
    found, count = store_dashboard.bulks_page(get_redis(), (page - 1) * PAGE, PAGE)
    return render_template("bulks.html", bulks=found, page=page, pages=max(1, -(-count // PAGE)), count=count,
                           urls=ingest_urls())


def _message_filters() -> dict[str, str | None]:
    status = (request.args.get("status") or "").upper() or None
    if status and status not in {g.name for g in STATUS_GROUPS.values()} | {store.UNKNOWN_GROUP}:
        abort(400, description=f"unknown status group {status!r}")
    return {"general_status": status, "to": (request.args.get("to") or "").strip() or None}


@bp.get("/bulks/<bulk_id>")
def bulk(bulk_id: str) -> str:
    r = get_redis()
    detail = found(store_dashboard.bulk_detail(r, bulk_id, current_app.config["CODE_DESCRIPTIONS"]),
                   f"No bulk {bulk_id!r} is stored (yet). Bulks appear with their first report.")
    filters = _message_filters()
    shown = MESSAGES_SHOWN[1] if request.args.get("more") else MESSAGES_SHOWN[0]
    messages = store.find_messages(r, bulk_id=bulk_id, limit=shown, **filters)
    return render_template(
        "bulk.html", bulk=detail, messages=messages, filters=filters, groups=present.GROUP_ORDER,
        segments=present.group_bar(detail["byGroup"]), delivery=present.bars(detail["deliveryTimes"]),
        shown=shown, more=shown < MESSAGES_SHOWN[1],
    )


@bp.get("/bulks/<bulk_id>/messages.csv")
def bulk_csv(bulk_id: str) -> Response:
    """Every message of the bulk that matches the filters, streamed a page of the index at a time."""
    filters = _message_filters()
    r = get_redis()
    found(store.get_bulk(r, bulk_id), f"No bulk {bulk_id!r}.")

    def rows() -> Iterator[str]:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(CSV_COLUMNS)
        for view in _bulk_messages(r, bulk_id):
            if store._matches(view, bulk_id, filters["to"], filters["general_status"], None, None):
                writer.writerow([_cell(v) for v in _csv_row(view)])
            if out.tell() > 64 * 1024:
                yield out.getvalue()
                out.seek(0)
                out.truncate()
        yield out.getvalue()

    response = Response(stream_with_context(rows()), mimetype="text/csv")
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in bulk_id)[:80]
    response.headers["Content-Disposition"] = f'attachment; filename="bulk-{safe}.csv"'
    return response


def _bulk_messages(r: Any, bulk_id: str, page: int = 1000) -> Iterator[dict[str, Any]]:
    entries = store.newest(r, keys.partial(INDEX_BULK, bulk_id=bulk_id), page)  # across lanes
    while ids := [entry for _, entry in zip(range(page), entries, strict=False)]:
        for blob in store.mget(r, [MESSAGE.format(t=t, message_id=i) for t, i in ids]):
            if blob:
                record = store.unpack(blob)
                yield record["hist"][record["cur"]]


def _csv_row(view: dict[str, Any]) -> list[Any]:
    status, error, price = view.get("status") or {}, view.get("error") or {}, view.get("price") or {}
    return [view.get("messageId"), view.get("to"), view.get("from"), status.get("groupName"),
            status.get("name"), error.get("name"), view.get("sentAt"), view.get("doneAt"),
            price.get("pricePerMessage"), price.get("currency"), view.get("smsCount"),
            view.get("callbackData"), view.get("source")]


def _cell(value: Any) -> str:
    """No spreadsheet formulas from data (callbackData is whatever the sender put there)."""
    text = "" if value is None else str(value)
    if text[:1] in ("=", "@", "\t", "\r") or (text[:1] in "+-" and not text[1:].replace(".", "").isdigit()):
        return "'" + text
    return text


@bp.get("/messages/<message_id>")
def message(message_id: str) -> str:
    message = found(store.get_message(get_redis(), message_id),
                    f"No message {message_id!r} is stored: no report for it has arrived, "
                    "or it is older than the retention.")
    return render_template("message.html", message=message)


@bp.get("/inbound")
def inbound() -> str:
    r = get_redis()
    keyword = (request.args.get("keyword") or "").strip() or None
    number = (request.args.get("number") or "").strip() or None
    if number:
        found = [*store.find_inbound(r, sender=number, keyword=keyword, limit=100),
                 *store.find_inbound(r, to=number, keyword=keyword, limit=100)]
        unique = {m["messageId"]: m for m in found}
        results = sorted(unique.values(), key=lambda m: m.get("receivedAt") or "", reverse=True)[:100]
    else:
        results = store.find_inbound(r, keyword=keyword, limit=100)
    return render_template("inbound.html", messages=results, keyword=keyword or "", number=number or "",
                           urls=ingest_urls(), groups=present.GROUP_ORDER)


@bp.get("/consumers")
def consumers() -> str:
    r = get_redis()
    routes = current_app.extensions["routes"]
    figures = dlq.consumer_figures(r, routes)
    http = [n for n, c in figures["consumers"].items() if c["kind"] == "http"]
    dead = {name: dlq.list_dead(r, name, 20) for name in http}
    return render_template("consumers.html", figures=figures, dead=dead,
                           answer=store_dashboard.answer_times(r, http))


@bp.get("/quarantine")
def quarantined() -> str:
    r = get_redis()
    return render_template("quarantine.html", entries=quarantine.entries(r, 50), count=r.llen(QUARANTINE))


def _int_arg(name: str, default: int) -> int:
    raw = request.args.get(name, "")
    return int(raw) if raw.isascii() and raw.isdigit() and 0 < int(raw) < 1_000_000 else default
