"""The fake's HTTP side: Infobip's SMS API under `/sms/1/`, the control API under `/_fake/`.

A Flask app served by werkzeug's threaded server (`make_server`): Flask gives routing, query
parsing and JSON for free, werkzeug is a real HTTP/1.1 server with keep-alive, and its
`werkzeug.socket` lets a fault drop or hold a connection after the request was read, which is
what an "unknown outcome" looks like to a client. http.server would need all of that by hand.

Every `/sms/1/` call passes, in order: a fault the test set for its path (status, hang, drop),
authentication (`Authorization: App <key>` or Basic, else 401 in Infobip's error shape), and
the endpoint. Every call is recorded with its answer (`GET /_fake/calls`).
"""

from __future__ import annotations

import base64
import functools
import hmac
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from flask import Flask, Response, g, jsonify, request

from app.api import _date_arg as date_arg
from app.api import limit_arg  # 1 to 1000 (Infobip's maximum; the seed gives none), ASCII digits
from app.errors import InvalidPayload
from tools.fake_infobip.model import DEFAULT_LIMIT, Fault, Model, error_object, infobip_time, status_object
from tools.fake_infobip.timeline import Timeline

HANG_SECONDS = 60.0  # a hung request is dropped after this, or when released
LOG_FILTERS = ("from", "to", "bulkId", "messageId", "generalStatus", "mcc", "mnc")


class BadRequest(Exception):
    pass


@dataclass
class Fake:
    api_key: str | None
    username: str | None
    password: str | None
    notify_delay: float = 1.0
    retry_scale: float = 1 / 60  # Infobip's first retry after 1 min -> 1 s
    model: Model = field(default_factory=Model)
    release: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.timeline = Timeline(self.model, self.notify_delay, self.retry_scale)

    def authenticate(self, header: str) -> str | None:
        """The scheme that matched ('App' or 'Basic'), or None."""
        scheme, _, value = header.partition(" ")
        if scheme == "App" and self.api_key:
            return "App" if hmac.compare_digest(value.strip().encode(), self.api_key.encode()) else None
        if scheme == "Basic" and self.username and self.password:
            expected = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
            return "Basic" if hmac.compare_digest(value.strip().encode(), expected.encode()) else None
        return None

    def reset(self) -> None:
        self.timeline.reset()
        self.release.set()  # let go of hung requests
        self.release = threading.Event()
        model = self.model
        with model.lock:
            for name, value in vars(Model()).items():
                if name != "lock":
                    setattr(model, name, value)


def service_error(status: int, message_id: str, text: str) -> tuple[Response, int]:
    return jsonify({"requestError": {"serviceException": {"messageId": message_id, "text": text}}}), status


def new_report(now: datetime, bulk_id: str | None = None, message_id: str | None = None,
               to: str = "41793026727", status: int = 5, error: int = 0, **extra: Any) -> dict[str, Any]:
    """A report as `/sms/1/reports` gives it (the seed's example), for the control API."""
    at = infobip_time(now)
    report = {"bulkId": bulk_id, "messageId": message_id or str(uuid.uuid4()), "to": to, "sentAt": at,
              "doneAt": at, "smsCount": 1, "price": {"pricePerMessage": 0.01, "currency": "EUR"},
              "status": status_object(status), "error": error_object(error), **extra}
    return {k: v for k, v in report.items() if v is not None}


def create_app(fake: Fake) -> Flask:
    app = Flask("fake_infobip")
    model = fake.model

    def query_arg(read: Callable[..., Any], *args: Any) -> Any:
        """Our query API reads `limit` and dates as Infobip does (app/api.py); its refusal is
        answered here in Infobip's error shape."""
        try:
            return read(*args)
        except InvalidPayload as err:
            reasons = (f"{name}: {', '.join(why)}" for name, why in (err.details or {}).items())
            raise BadRequest("; ".join(reasons)) from None

    def json_body() -> dict[str, Any]:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise BadRequest("the body must be a JSON object")
        return body

    def hold(fault: Fault) -> Response:
        """Answer nothing: hold the request (hang) or close at once (drop), then cut the connection.
        Recorded now, with no answer, so a test sees the call while it is held."""
        model.record_call(request.method, request.path, None, g.get("auth") or "none")
        g.recorded = True
        if fault.hang:
            fake.release.wait(HANG_SECONDS)
        sock = request.environ.get("werkzeug.socket")
        if sock is not None:
            sock.shutdown(socket.SHUT_RDWR)
        return Response(status=500)  # never arrives: werkzeug finds the socket closed

    def infobip(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def endpoint() -> Any:
            fault = model.next_fault(request.method, request.path)
            if fault and not (fault.hang or fault.drop):
                answer, status = service_error(fault.status, "TOO_MANY_REQUESTS" if fault.status == 429
                                               else "GENERAL_ERROR", "fault set by the test")
                if fault.retry_after is not None:
                    answer.headers["Retry-After"] = str(int(fault.retry_after))
                return answer, status
            request.get_data()  # the whole request is read before anything else happens
            g.auth = fake.authenticate(request.headers.get("Authorization", ""))
            if g.auth is None:
                return service_error(401, "UNAUTHORIZED", "Invalid login details")
            try:
                if fault:
                    if fault.apply:
                        view()
                    return hold(fault)
                return view()
            except BadRequest as err:
                return service_error(400, "BAD_REQUEST", str(err))

        return endpoint

    @app.after_request
    def record(response: Response) -> Response:
        if request.path.startswith("/sms/") and not g.get("recorded"):
            model.record_call(request.method, request.path, response.status_code, g.get("auth") or "none")
        return response

    # --- Infobip's API ---------------------------------------------------------------------

    @app.get("/sms/1/reports")
    @infobip
    def reports() -> Any:
        limit = query_arg(limit_arg, DEFAULT_LIMIT)
        return {"results": model.take_reports(limit, request.args.get("bulkId"),
                                              request.args.get("messageId"))}

    @app.get("/sms/1/inbox/reports")
    @infobip
    def inbox() -> Any:
        return {"results": model.take_inbox(query_arg(limit_arg, DEFAULT_LIMIT))}

    @app.get("/sms/1/logs")
    @infobip
    def logs() -> Any:
        filters = {name: request.args.getlist(name) for name in LOG_FILTERS if request.args.get(name)}
        since, until = query_arg(date_arg, "sentSince"), query_arg(date_arg, "sentUntil")
        return {"results": model.logs(filters, since, until, query_arg(limit_arg, DEFAULT_LIMIT))}

    def send(bulk_id: str | None, items: list[dict[str, Any]]) -> Any:
        if not items:
            raise BadRequest("no destinations")
        answer, accepted = model.send(bulk_id or (str(uuid.uuid4()) if len(items) > 1 else None), items)
        fake.timeline.sent(accepted)
        return answer

    @app.post("/sms/1/text/single")
    @infobip
    def single() -> Any:
        body = json_body()
        to = body.get("to")
        items = [{**body, "to": one} for one in (to if isinstance(to, list) else [to])]
        return send(body.get("bulkId"), items)

    @app.post("/sms/1/text/multi")
    @infobip
    def multi() -> Any:
        messages = json_body().get("messages")
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            raise BadRequest("messages must be a list of objects")
        return send(None, messages)

    @app.post("/sms/1/text/advanced")
    @infobip
    def advanced() -> Any:
        body = json_body()
        messages = body.get("messages")
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            raise BadRequest("messages must be a list of objects")
        items = []
        for message in messages:
            destinations = message.get("destinations") or [{}]
            if not isinstance(destinations, list) or not all(isinstance(d, dict) for d in destinations):
                raise BadRequest("destinations must be a list of objects")
            common = {k: v for k, v in message.items() if k != "destinations"}
            items += [{**common, **destination} for destination in destinations]
        return send(body.get("bulkId"), items)

    from tools.fake_infobip.control_api import register

    register(app, fake)
    return app
