"""The operator dashboard (SPEC §10): server-rendered pages at `/`, for people.

- `session.py`: sign-in, the session cookie, CSRF, rate limits, security headers.
- `pages.py`: the pages (GET), reading aggregates (app/store_dashboard.py), never scanning.
- `actions.py`: sign-in/out and the actions (POST, each with its CSRF token).
- `optouts.py`: the opt-out page and its add and lift actions.
- `present.py`: filters and the inline-SVG shapes; `templates/`, `static/` (CSS, one small script).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, redirect, render_template, request, url_for
from werkzeug.exceptions import HTTPException

from app.dashboard import present, session

bp = Blueprint("dashboard", __name__, template_folder="templates", static_folder="static",
               static_url_path="/dashboard/static")
PUBLIC = frozenset({"dashboard.login", "dashboard.login_post", "dashboard.static"})


@bp.before_request
def guard() -> Any:
    """No page without a session (302 to /login); no POST without its CSRF token (400)."""
    if request.method == "POST" and not session.csrf_ok():
        return render_template("error.html", status=400, title="The form expired",
                               message="This form's security token is missing or out of date. "
                                       "Go back, reload the page and try again."), 400
    if request.endpoint not in PUBLIC and not session.signed_in():
        wanted = request.full_path.rstrip("?") if request.method == "GET" else None
        return redirect(url_for("dashboard.login", next=wanted) if wanted and wanted != "/" else
                        url_for("dashboard.login"))
    return None


bp.after_request(session.secure_headers)


@bp.errorhandler(HTTPException)
def page_error(err: HTTPException) -> tuple[str, int]:
    page = render_template("error.html", status=err.code, title=err.name, message=err.description)
    return page, err.code or 500


@bp.app_context_processor
def helpers() -> dict[str, Any]:
    return {"csrf_token": session.csrf_token}


def init_app(app: Flask) -> None:
    from app.dashboard import actions, optouts, pages  # noqa: F401  (their routes join the blueprint)

    session.init_app(app)
    present.register(app)
    app.register_blueprint(bp)
