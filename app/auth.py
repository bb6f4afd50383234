"""Who may call us: ingest credentials, source networks, and API bearer keys (SPEC §6).

All secret comparisons are constant-time (`hmac.compare_digest` on bytes). Source addresses
come from `request.remote_addr`, which werkzeug's ProxyFix sets from exactly
`TRUSTED_PROXIES` hops of X-Forwarded-For (see `create_app`), so a forged header beyond
those hops is ignored.
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl

import werkzeug.urls  # noqa: F401  (registers the "werkzeug.url_quote" error handler used below)
from flask import Request

from app.errors import Forbidden, Unauthorized


def _same(given: str | None, expected: str | None) -> bool:
    if given is None or expected is None:
        return False
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


@functools.lru_cache(maxsize=32)
def query_token(query_string: bytes) -> str | None:
    """`request.args.get("token")`, parsed once per query string: Infobip calls one notifyUrl,
    so every report comes with the same query string, and werkzeug parsed it into a new MultiDict
    each time (~4% of a single-report request, docs/BENCHMARKS.md, session 8). Parsed as
    werkzeug parses `args`; a few recent strings are kept, however many a caller invents."""
    pairs = parse_qsl(query_string.decode(), keep_blank_values=True, errors="werkzeug.url_quote")
    return next((value for name, value in pairs if name == "token"), None)


def check_source(request: Request, networks: Iterable[ipaddress._BaseNetwork]) -> None:
    networks = list(networks)
    if not networks:
        return
    try:
        address = ipaddress.ip_address(request.remote_addr or "")
    except ValueError as err:
        raise Forbidden("source address not allowed") from err
    if not any(address in net for net in networks):
        raise Forbidden("source address not allowed")


def check_ingest(request: Request, config: Mapping[str, Any]) -> None:
    """Allowed source, then a valid token or HTTP Basic pair. Raises Forbidden/Unauthorized."""
    check_source(request, config["ALLOWED_NETWORKS"])
    token, user, password = (
        config["WEBHOOK_TOKEN"],
        config["WEBHOOK_BASIC_USER"],
        config["WEBHOOK_BASIC_PASSWORD"],
    )
    if not (token or user) and config["DEV_MODE"]:
        return
    if token:
        given = query_token(request.query_string) or request.headers.get("X-Webhook-Token")
        if _same(given, token):
            return
    if user and password:
        auth = request.authorization
        if auth is not None and auth.type == "basic":
            # Evaluate both comparisons, so timing does not tell which half was wrong.
            user_ok = _same(auth.username, user)
            password_ok = _same(auth.password, password)
            if user_ok and password_ok:
                return
    raise Unauthorized("missing or wrong credentials")


def check_api(request: Request, config: Mapping[str, Any]) -> None:
    """Bearer token from API_KEYS. No keys configured means no access at all."""
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given:
        raise Unauthorized("missing bearer token")
    # Compare against every key (no early exit) so timing does not reveal a prefix match.
    matches = [_same(given.strip(), key) for key in config["API_KEYS"]]
    if not any(matches):
        raise Unauthorized("wrong bearer token")
