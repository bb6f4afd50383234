"""The opt-out page (SPEC §11): the list newest first, filtered by number or receiver, and the
add and lift actions. Actions are POSTs, CSRF-checked by the blueprint's guard like every other;
a change is queued through `app.optout.lists.request_change` and applied by a drain job with its
`contact.*` event, as a STOP by SMS is, so the page says "in a moment" rather than showing it."""

from __future__ import annotations

from typing import Any

from flask import current_app, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from app.connection import get_redis
from app.dashboard import bp
from app.optout import lists

SHOWN = 200
MAX_NOTE = 200  # as the API allows
NOT_A_NUMBER = "is not a phone number: digits, optionally after a +"


def _arg(name: str) -> str:
    return (request.values.get(name) or "").strip()


@bp.get("/optouts")
def optouts() -> str:
    r = get_redis()
    number, receiver = _arg("number"), _arg("receiver")
    msisdn = lists.normalize(number) if number else None
    scope = (lists.ALL if receiver == lists.ALL else lists.normalize(receiver)) if receiver else None
    bad = [f"{shown!r} {NOT_A_NUMBER}." for given, shown in ((msisdn, number), (scope, receiver))
           if shown and given is None]
    if bad:
        entries: list[dict[str, Any]] = []
    elif msisdn:
        entries = [{"msisdn": msisdn, **s} for s in lists.lookup(r, msisdn)["scopes"]
                   if scope is None or s["receiver"] in (scope, lists.ALL)]
    else:
        entries = lists.find(r, scope, None, SHOWN)
    optout = current_app.extensions["routes"].optout
    return render_template("optouts.html", entries=entries, number=number, receiver=receiver, bad=bad,
                           shown=SHOWN, stop=sorted(optout.stop_keywords),
                           start=sorted(optout.start_keywords))


def _change(msisdn: str | None, action: str, receiver: str) -> Response:
    """Queue the change and go back to the number's entries, saying when it will show."""
    number = lists.normalize(msisdn or "")
    if number is None or receiver == "":
        flash(f"Nothing changed: {msisdn or 'the number'!r} {NOT_A_NUMBER}." if number is None else
              "Nothing changed: give the receiver number, or choose every receiver.")
        return redirect(url_for("dashboard.optouts"))
    note = _arg("note")[:MAX_NOTE] or None
    lists.request_change(get_redis(), current_app.config, number, action, receiver, note)
    what = "every receiver" if receiver == lists.ALL else receiver
    if action == "optout":
        done = f"opted out of {what}"
    else:
        done = "opted back in everywhere" if receiver == lists.ALL else f"opted back in to {what}"
    flash(f"Queued: {number} will be {done} in a moment, once a worker applies it "
          "(with its contact event). Reload to see it here.")
    return redirect(url_for("dashboard.optouts", number=number))


@bp.post("/optouts")
def optout_add() -> Response:
    """Form fields: `msisdn`, `receiver` (a number) or `all` (every receiver), `note`."""
    every = bool(request.form.get("all"))
    receiver = lists.ALL if every else lists.normalize(_arg("receiver")) or ""
    if every and _arg("receiver"):
        flash("Nothing changed: give a receiver number or choose every receiver, not both.")
        return redirect(url_for("dashboard.optouts"))
    return _change(_arg("msisdn"), "optout", receiver)


@bp.post("/optouts/<msisdn>/lift")
def optout_lift(msisdn: str) -> Response:
    """Form field `receiver`: the entry's receiver (`*`: every entry of the number)."""
    given = _arg("receiver")
    receiver = lists.ALL if given == lists.ALL else lists.normalize(given) or ""
    return _change(msisdn, "optin", receiver)
