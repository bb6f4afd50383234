"""Infobip callback receiver: the Flask application factory.

`create_app()` reads the environment (app/config.py), refuses insecure or broken settings,
and wires the blueprints: ingest (`/infobip/...`), query API (`/api/...`) and health probes.
Errors of every kind are answered as JSON by one handler.
"""

from __future__ import annotations

import functools
import inspect
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

import orjson
from flask import Flask, Request, Response, jsonify
from flask.json.provider import DefaultJSONProvider
from redis import RedisError
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from app import config, logs
from app.connection import Replication, make_client
from app.errors import ReceiverError, StoreUnavailable
from app.group_commit import GroupCommit
from app.mo_template import Template
from app.routes import load_configured_routes

log = logging.getLogger(__name__)

# Every printable ASCII byte stays as sent ('%' too: escapes are decoded as before).
_QUERY_SAFE = "".join(chr(c) for c in range(0x21, 0x7F))


class ReceiverRequest(Request):
    """Werkzeug decodes the raw query string as strict UTF-8 (`request.args`, `full_path`), so a
    non-UTF-8 byte sent unescaped (`?text=` and a raw 0x80, which proxies pass on) raised a 500 in auth,
    before the request could even be quarantined. Such bytes are percent-escaped on arrival;
    werkzeug then keeps them escaped in the values, exactly as it does for a sent `%80`.
    It also notes when it was made: the start of the time `metrics.observe_end` reports."""

    def __init__(self, environ: dict[str, Any], populate_request: bool = True, shallow: bool = False) -> None:
        super().__init__(environ, populate_request, shallow)
        self.started = time.perf_counter()  # what `metrics.observe_end` times the answer from
        try:
            self.query_string.decode()
        except UnicodeDecodeError:
            self.query_string = quote(self.query_string, safe=_QUERY_SAFE).encode("ascii")


class JSONProvider(DefaultJSONProvider):
    """Flask's JSON answers written by orjson: the same JSON, for half the instructions of an
    ingest answer (67k -> 35k, the Response included) and far fewer for the query API's lists of
    up to 1,000 messages. Non-ASCII text is sent as UTF-8 rather than escaped. What orjson
    refuses (integers beyond 64 bits, keys that are not strings) and indented output (debug
    mode) go to Flask's own provider."""

    _OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATETIME  # dates as Flask writes them

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        if kwargs.get("separators") == (",", ":") and len(kwargs) == 1:  # `response()`, compact
            try:
                return orjson.dumps(obj, default=self.default, option=self._OPTIONS).decode()
            except TypeError:
                pass
        return super().dumps(obj, **kwargs)


# Whether a function is `async def` never changes: asked once per function (views, hooks).
_is_coroutine_function = functools.lru_cache(maxsize=512)(inspect.iscoroutinefunction)


class Receiver(Flask):
    """Flask, with our request class, and `ensure_sync` remembering its answer per function.

    Flask asks `inspect.iscoroutinefunction` of the view, MethodView's method and every hook
    on every request (~4.8k instructions each, four times per ingest request). A bound method
    is a new object each time, so the answer is kept for the function it binds."""

    request_class = ReceiverRequest

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        if _is_coroutine_function(getattr(func, "__func__", func)):
            return self.async_to_sync(func)
        return func


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    app = Receiver(__name__)
    app.json = JSONProvider(app)
    app.config.from_mapping(config.load())
    if test_config:
        app.config.update(test_config)
    app.config.update(config.check(app.config))
    app.extensions["redis"] = make_client(app.config)
    app.extensions["group_commit"] = GroupCommit(app.extensions["redis"], app.config["QUARANTINE_MAX"],
                                                 replication=Replication.from_config(app.config))
    template = app.config["MO_URL_TEMPLATE"]
    app.extensions["mo_template"] = Template.parse(template) if template else Template.default()
    if app.config["TRUSTED_PROXIES"]:
        # request.remote_addr becomes the address exactly TRUSTED_PROXIES hops back.
        # X-Forwarded-Proto too: the dashboard's cookie is Secure when the request came over https.
        hops = app.config["TRUSTED_PROXIES"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)  # type: ignore[method-assign]

    # Load the routes file now: a bad one must stop start-up, with its line in the message.
    app.extensions["routes"] = load_configured_routes(app.config)

    from app import admin, api, cli, dashboard, ingest, metrics, openapi
    from app.optout import api as optout_api
    from app.optout import cli as optout_cli

    if not app.testing:
        logs.configure()
    app.after_request(metrics.observe_end)
    app.register_blueprint(ingest.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(optout_api.bp)
    app.register_blueprint(api.health)
    app.register_blueprint(metrics.bp)
    app.register_blueprint(openapi.bp)
    dashboard.init_app(app)  # the operator pages at / (SPEC §10)
    for command in (*cli.COMMANDS, optout_cli.group):
        app.cli.add_command(command)
    app.register_error_handler(ReceiverError, answer_error)
    app.register_error_handler(HTTPException, answer_error)
    app.register_error_handler(Exception, answer_error)
    return app


def answer_error(err: Exception) -> Response:
    """The one place an exception becomes an HTTP answer, always JSON.

    A Redis failure anywhere is a 503 with Retry-After: Infobip retries, so nothing is lost.
    """
    if isinstance(err, RedisError):
        log.warning("redis unavailable: %s", err.__class__.__name__)
        err = StoreUnavailable("Redis cannot take the request; retry later")
    if isinstance(err, ReceiverError):
        body = {"error": err.error, "message": err.message}
        if err.details is not None:
            body["details"] = err.details
        response = jsonify(body)
        response.status_code = err.status
        if isinstance(err, StoreUnavailable):
            response.headers["Retry-After"] = str(err.retry_after)
        if err.status == 401:
            response.headers["WWW-Authenticate"] = 'Basic realm="infobip-receiver"'
        if err.status == 408:  # the rest of a body that timed out is unreadable: drop the connection
            response.headers["Connection"] = "close"
        return response
    if isinstance(err, HTTPException):
        response = jsonify({"error": err.name.lower().replace(" ", "_"), "message": err.description})
        response.status_code = err.code or 500
        if err.code == 405 and err.get_headers():
            response.headers.update({k: v for k, v in err.get_headers() if k == "Allow"})
        return response
    log.exception("unhandled error")  # a bug: say so in the log, answer without internals
    response = jsonify({"error": "internal_error", "message": "internal error"})
    response.status_code = 500
    return response
