"""Worker-side configuration: the same environment variables as the web tier (app.config),
and the routes file, read once per process (a worker restart picks up a changed file)."""

from __future__ import annotations

from functools import cache
from typing import Any

from app import config, logs
from app.routes import Routes, load_configured_routes


@cache
def settings() -> dict[str, Any]:
    logs.configure()  # first call in a worker process: our log lines, as JSON (or text)
    loaded = config.load()
    return {**loaded, **config.check({**loaded, "DEV_MODE": True})}


@cache
def routes() -> Routes:
    return load_configured_routes(settings())
