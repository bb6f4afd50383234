"""Sign-in, sign-out and the dashboard's actions. Every POST reaches these views only with a
valid CSRF token (checked in `guard`, app/dashboard/__init__.py); each action then redirects
back (post/redirect/get), with a message saying what happened."""

from __future__ import annotations

from typing import Any

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from app import dlq, ingest, quarantine
from app.connection import get_redis
from app.dashboard import bp, session
from app.dashboard.pages import found
from app.keys import QUARANTINE


def _login_page(status: int = 200, error: str | None = None) -> tuple[str, int, dict[str, str]]:
    wait = session.locked_for()
    headers = {"Retry-After": str(wait)} if wait else {}
    dev_hint = current_app.config["DEV_MODE"]
    return (render_template("login.html", error=error, locked=wait, dev_hint=dev_hint,
                            has_keys=bool(current_app.config["API_KEYS"]), next=_next()),
            429 if wait else status, headers)


def _next() -> str | None:
    """Where to go after signing in: a path of this site only (no `//host`, no scheme)."""
    wanted = request.values.get("next") or ""
    return wanted if wanted.startswith("/") and not wanted.startswith(("//", "/\\")) else None


@bp.get("/login")
def login() -> Any:
    if session.signed_in():
        return redirect(_next() or url_for("dashboard.overview"))
    return _login_page()


@bp.post("/login")
def login_post() -> Any:
    if session.locked_for():
        return _login_page()
    key = session.matching_key(request.form.get("api_key", "").strip())
    if key is None:
        session.count_failure()
        page, _status, headers = _login_page(error="That key is not one of the API keys of this service.")
        return page, 401, headers
    get_redis().delete(session._failures_key())
    session.sign_in(key)
    return redirect(_next() or url_for("dashboard.overview"))


@bp.post("/logout")
def logout() -> Response:
    session.sign_out()
    flash("Signed out.")
    return redirect(url_for("dashboard.login"))


@bp.post("/consumers/<name>/replay")
def replay_dead(name: str) -> Response:
    """One dead letter (form field `event_id`) or all of the consumer's, back to its outbox."""
    if name not in current_app.extensions["routes"].consumers:
        abort(404, description=f"No consumer {name!r} in the routes file.")
    event_id = request.form.get("event_id") or None
    moved = dlq.replay_dead(get_redis(), name, {event_id} if event_id else None)
    flash(f"{moved} dead letter{'s' if moved != 1 else ''} of {name} queued for delivery again."
          if moved else "Nothing replayed: that dead letter was already replayed or is gone.")
    return redirect(url_for("dashboard.consumers") + f"#consumer-{name}")


@bp.post("/quarantine/<entry_id>/replay")
def replay_quarantined(entry_id: str) -> Response:
    _quarantined(entry_id)
    answer = ingest.replay(entry_id)
    if answer["status"] == 200 and not answer.get("rejected"):
        flash(f"Replayed: {answer['accepted']} item(s) accepted; the entry left the quarantine.")
    elif answer["status"] == 200:
        flash(f"Replayed: {answer['accepted']} accepted, {len(answer['rejected'])} still rejected; "
              "the entry stays.")
    else:
        flash(f"Still rejected ({answer['status']}): {answer.get('error')}. The entry stays.")
    return redirect(url_for("dashboard.quarantined"))


@bp.post("/quarantine/<entry_id>/drop")
def drop_quarantined(entry_id: str) -> Response:
    get_redis().lrem(QUARANTINE, 1, _quarantined(entry_id))
    flash("Dropped the entry: it is gone for good.")
    return redirect(url_for("dashboard.quarantined"))


def _quarantined(entry_id: str) -> bytes:
    """The stored entry, or a 404 page."""
    raw, _entry = found(quarantine.find(get_redis(), entry_id),
                        f"No quarantine entry {entry_id!r}: replayed or dropped already?")
    return raw
