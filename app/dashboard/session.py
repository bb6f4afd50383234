"""Sign-in, sessions, CSRF and security headers of the dashboard (SPEC §10, §6).

The session is Flask's signed cookie (HttpOnly, SameSite=Strict, Secure when the request came
over https as ProxyFix reads X-Forwarded-Proto from TRUSTED_PROXIES hops), holding a session id
and a CSRF token. The id must also exist in Redis (`dash:session:<sid>`, expiring with the
session), so signing out ends the session for good, not only in this browser. The session
remembers a fingerprint of the API key it was opened with: a key removed from API_KEYS signs
its sessions out. Failed sign-ins are counted per source address in Redis and refused beyond
DASHBOARD_LOGIN_ATTEMPTS per DASHBOARD_LOGIN_WINDOW.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta
from typing import Any, NoReturn

from flask import Flask, Request, Response, current_app, request, session
from flask.sessions import NullSession, SecureCookieSessionInterface

from app.connection import get_redis
from app.keys import DASH_LOGIN_FAILURES, DASH_SESSION

# Pages may use only the app's own files; no inline script or style, no framing, no plugins.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
}
# Ingest and the API never use a session: they skip the cookie's decoding and signing altogether.
_NO_SESSION = ("/infobip/", "/api/", "/metrics", "/healthz", "/readyz", "/openapi")


class _NoSession(NullSession):
    """What ingest and the API get: empty, read-only, never saved (Flask skips a null session).
    Nothing can be written to it, so one serves every request."""

    def _fail(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise RuntimeError("ingest and the API have no session")

    __setitem__ = __delitem__ = clear = pop = popitem = update = setdefault = _fail  # type: ignore[assignment]


_NONE = _NoSession()


class DashboardSessions(SecureCookieSessionInterface):
    """Flask's signed-cookie session, Secure exactly when the request came over https."""

    def open_session(self, app: Flask, request: Request) -> Any:
        if request.path.startswith(_NO_SESSION):
            return _NONE
        return super().open_session(app, request)

    def get_cookie_secure(self, app: Flask) -> bool:
        return request.is_secure


def secret_key(config: dict[str, Any]) -> str | None:
    """SECRET_KEY, or one derived from API_KEYS (the same in every process; None without keys)."""
    if config.get("SECRET_KEY"):
        return config["SECRET_KEY"]
    keys = sorted(config.get("API_KEYS") or [])
    if not keys:
        return None
    label = b"infobip-receiver dashboard session"
    return hmac.new(label, "\n".join(keys).encode(), hashlib.sha256).hexdigest()


def init_app(app: Flask) -> None:
    app.secret_key = secret_key(app.config)
    app.session_interface = DashboardSessions()
    app.config.update(
        SESSION_COOKIE_NAME="receiver_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        PERMANENT_SESSION_LIFETIME=timedelta(hours=int(app.config["DASHBOARD_SESSION_HOURS"])),
    )


def _fingerprint(api_key: str) -> str:
    return hmac.new(current_app.secret_key.encode(), api_key.encode(), hashlib.sha256).hexdigest()[:32]


def matching_key(given: str) -> str | None:
    """The configured API key equal to `given` (constant-time, every key compared)."""
    found = None
    for key in current_app.config["API_KEYS"]:
        if hmac.compare_digest(given.encode(), key.encode()):
            found = key
    return found


def csrf_token() -> str:
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


def csrf_ok() -> bool:
    given, expected = request.form.get("csrf_token", ""), session.get("csrf")
    return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())


def signed_in() -> bool:
    sid, fingerprint = session.get("sid"), session.get("key")
    if not (sid and fingerprint):
        return False
    if not any(hmac.compare_digest(fingerprint, _fingerprint(k)) for k in current_app.config["API_KEYS"]):
        return False
    return bool(get_redis().exists(DASH_SESSION.format(sid=sid)))


def sign_in(api_key: str) -> None:
    """A fresh session id and CSRF token (no fixation of a token seen before signing in)."""
    sid = secrets.token_urlsafe(32)
    ttl = int(current_app.permanent_session_lifetime.total_seconds())
    get_redis().set(DASH_SESSION.format(sid=sid), "1", ex=ttl)
    session.clear()
    session.permanent = True
    session.update(sid=sid, key=_fingerprint(api_key), csrf=secrets.token_urlsafe(32))


def sign_out() -> None:
    if session.get("sid"):
        get_redis().delete(DASH_SESSION.format(sid=session["sid"]))
    session.clear()


def _failures_key() -> str:
    return DASH_LOGIN_FAILURES.format(address=request.remote_addr or "unknown")


def locked_for() -> int:
    """Seconds until this address may try again; 0 when it may now."""
    key = _failures_key()
    failures = int(get_redis().get(key) or 0)
    if failures < current_app.config["DASHBOARD_LOGIN_ATTEMPTS"]:
        return 0
    return max(int(get_redis().ttl(key)), 1)


def count_failure() -> None:
    """The window starts at the first failure (INCR keeps the key's expiry)."""
    pipe = get_redis().pipeline(transaction=True)
    pipe.set(_failures_key(), 0, ex=current_app.config["DASHBOARD_LOGIN_WINDOW"], nx=True)
    pipe.incr(_failures_key())
    pipe.execute()


def secure_headers(response: Response) -> Response:
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    if request.endpoint != "dashboard.static":
        response.headers["Cache-Control"] = "no-store"
    return response
