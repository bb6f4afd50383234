"""HTTP adapter for Infobip callbacks: one base view does auth, size, decode, validation,
quarantine and the durable hand-off; each endpoint only names its parser (as anymail does).

Answers (SPEC §2.3): 200 {"accepted": n, "rejected": [...]} once the accepted items are in
Redis; 400 when nothing is valid; 401/403 auth; 405 method; 413 size; 415 media type; 503 with
Retry-After when Redis cannot take the write (a RedisError from any step; see
`app.answer_error`). Every rejected input is quarantined first.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import ModuleType
from typing import Any

import orjson
from flask import Blueprint, Request, Response, current_app, request
from flask.views import MethodView
from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge
from werkzeug.routing import PathConverter

from app import auth, dlr, enqueue, handoff, metrics, mo, quarantine
from app.connection import get_redis
from app.decode import decode_body
from app.errors import InvalidPayload, NotFound, ReceiverError, RequestTimeout, UriTooLong
from app.keys import QUARANTINE

bp = Blueprint("ingest", __name__, url_prefix="/infobip")


class IngestView(MethodView):
    """Base view. Subclasses set `kind` (event family) and `parser` (items + load)."""

    kind: str
    parser: ModuleType
    init_every_request = False  # one view object serves every request: it keeps no request state
    source = "push"  # provenance of what this view accepts (SPEC §9); a replay keeps the input's

    def post(self, rest: str = "") -> Response:
        # The objects, not their proxies: each proxy access is a context-variable lookup.
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        auth.check_ingest(request._get_current_object(), app.config)  # type: ignore[attr-defined]
        answer, _status = self.process()  # always 200: every other answer is raised
        # The JSON answer made here: from a (dict, status) pair, Flask's make_response took 1.5 us more.
        return app.json.response(answer)

    def process(self, keep_rejects: bool = True) -> tuple[dict[str, Any], int]:
        """Everything after auth; also what a quarantine replay runs again (keep_rejects=False:
        the entry being replayed is still there, it needs no twin)."""
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        req = request._get_current_object()  # type: ignore[attr-defined]
        config = app.config
        r = app.extensions["redis"]

        def keep(entry: bytes | None) -> None:
            if entry is not None and keep_rejects:
                quarantine.keep(r, entry, config["QUARANTINE_MAX"])

        url_bytes = len(req.environ.get("RAW_URI") or req.full_path)
        if url_bytes > config["MAX_URL_BYTES"]:
            keep(quarantine.record(req, "URL too long", {"urlBytes": url_bytes}))
            raise UriTooLong(f"the URL is {url_bytes} bytes, over MAX_URL_BYTES ({config['MAX_URL_BYTES']})")

        try:
            body = req.get_data(cache=False)
        except RequestEntityTooLarge:
            keep(quarantine.record(req, "body too large"))
            raise
        except ClientDisconnected as err:  # werkzeug's name for any failed body read
            if isinstance(err.__context__, TimeoutError):
                keep(quarantine.record(req, "body not received in time"))
                raise RequestTimeout("the request body did not arrive in time") from err
            keep(quarantine.record(req, "body cut short"))
            raise
        try:
            raw_items = self.raw_items(body, req)
        except ReceiverError as err:
            keep(quarantine.record(req, err.message, err.details, body))
            metrics.count_items(self.kind, 0, 1)
            raise
        accepted, rejected = self.validate(raw_items, config)
        metrics.count_items(self.kind, len(accepted), len(rejected))
        entry = None
        if rejected:
            entry = quarantine.record(req, handoff.reason(self.kind, rejected), rejected, body)
        if not accepted:
            keep(entry)
            raise InvalidPayload("nothing valid in the body", rejected)
        write = enqueue.Write(self.lanes(accepted, config), entry if keep_rejects else None)
        app.extensions["group_commit"].push(write)  # returns once it is in Redis
        return {"accepted": len(accepted), "rejected": rejected}, 200

    def raw_items(self, body: bytes, req: Request) -> list[Any]:
        kind, doc = decode_body(body, req.content_type)
        found = self.parser.items(kind, doc)
        if not found:
            raise InvalidPayload("no items in the body")
        return found

    def validate(self, raw_items: list[Any], config: Mapping[str, Any],
                 ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        return handoff.validate(self.kind, raw_items, config["CODE_DESCRIPTIONS"], self.source)

    def lanes(self, accepted: list[dict[str, Any]], config: Mapping[str, Any]) -> dict[int, list[bytes]]:
        return handoff.by_lane(self.kind, accepted, config["DRAIN_LANES"])


class DeliveryReportView(IngestView):
    kind = "dlr"
    parser = dlr


class InboundView(IngestView):
    """MO forwards: GET is Infobip's default, POST on request. Path placeholders of
    MO_URL_TEMPLATE are read from what follows /infobip/mo/."""

    kind = "mo"
    parser = mo

    def get(self, rest: str = "") -> Response:
        return self.post(rest)

    def raw_items(self, body: bytes, req: Request) -> list[Any]:
        template = current_app.extensions["mo_template"]
        # The leading '/' keeps an empty first segment (an empty %receiver% in `//in-123`).
        rest = "/" + (req.view_args or {}).get("rest", "")
        found = mo.items(template, rest, req.args, req.content_type, body)
        if not found:
            raise InvalidPayload("no MO parameters in the request")
        return found


def replay(entry_id: str, to: str | None = None) -> dict[str, Any]:
    """Run a quarantined request through its endpoint again, e.g. after a fix. It passed auth
    when it came. Fully accepted now: it leaves the quarantine; otherwise it stays.

    `to="mo"` sends a delivery-report entry to /infobip/mo instead: inbound messages that a
    misconfigured MO URL posted to /infobip/dlr. Only the items rejected there go, as Infobip's
    JSON inbound push `{"results": [...]}` (the others were accepted as reports already)."""
    if to not in (None, "mo"):
        raise InvalidPayload("bad replay target", {"to": ['"mo", or nothing for the endpoint it came to']})
    r = get_redis()
    found = quarantine.find(r, entry_id)
    if found is None:
        raise NotFound(f"no quarantine entry {entry_id!r}")
    raw, entry = found
    path, method, body = entry["path"], entry["method"], quarantine.body_of(entry)
    headers = {k: v for k, v in entry["headers"].items() if k.lower() not in ("content-length", "host")}
    if to == "mo" and path == "/infobip/dlr":
        path, method, body = "/infobip/mo", "POST", _rejected_items(entry, body)
        headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
        headers["Content-Type"] = "application/json"
    with current_app.test_request_context(
        path, method=method, query_string=entry["query"], headers=headers,
        data=body, environ_base={"REMOTE_ADDR": entry.get("remoteAddr") or ""},
    ):
        if request.url_rule is None:  # kept input no endpoint takes (an unreadable SMPP PDU)
            return {"id": entry_id, "status": 404, "error": f"nothing to replay {entry['path']} through"}
        view = current_app.view_functions[request.url_rule.endpoint].view_class()
        view.source = entry.get("source") or "push"  # a replayed pulled page stays "pull"
        try:
            answer, _status = view.process(keep_rejects=False)
        except ReceiverError as err:
            return {"id": entry_id, "status": err.status, "error": err.message, "details": err.details}
    if not answer["rejected"]:
        r.lrem(QUARANTINE, 1, raw)
    return {"id": entry_id, "status": 200, **answer}


def _rejected_items(entry: dict[str, Any], body: bytes) -> bytes:
    """The items of a delivery-report body that were rejected, as a JSON push; the body as it
    is when it was refused as a whole (no per-item reasons)."""
    rejected = entry.get("errors")
    if not (isinstance(rejected, list) and all(isinstance(x, dict) and "index" in x for x in rejected)):
        return body
    try:
        found = dlr.items(*decode_body(body, entry["headers"].get("Content-Type")))
    except ReceiverError:
        return body
    return orjson.dumps({"results": [found[x["index"]] for x in rejected if x["index"] < len(found)]})


class MoTailConverter(PathConverter):
    """What follows /infobip/mo/ when MO_URL_TEMPLATE puts placeholders in the path. Unlike
    `path`, it may start with '/' and hold newlines: an empty placeholder (`/mo//in-123`) or a
    text with a line break in a path segment are data, not a 404 and a lost message."""

    regex = r"[\s\S]*?"
    part_isolating = False  # werkzeug would infer True: the regex does not spell out '/'


def _register_converter(state: Any) -> None:
    state.app.url_map.converters["mo_tail"] = MoTailConverter


bp.record_once(_register_converter)
bp.add_url_rule("/dlr", view_func=DeliveryReportView.as_view("dlr"))
inbound = InboundView.as_view("mo")
# `/infobip/mo/?sender=...` too: an MO URL pasted at Infobip with a trailing slash must not
# turn every inbound message into a 404. No slash merging: werkzeug would answer a path with
# an empty placeholder (`//`) with a 308 redirect that Infobip does not follow.
bp.add_url_rule("/mo", view_func=inbound, strict_slashes=False, merge_slashes=False)
bp.add_url_rule("/mo/<mo_tail:rest>", view_func=inbound, merge_slashes=False)
