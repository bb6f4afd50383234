"""Worker-side configuration: the same environment variables as the web tier (app.config)."""

from __future__ import annotations

from functools import cache
from typing import Any

from app import config


@cache
def settings() -> dict[str, Any]:
    loaded = config.load()
    return {**loaded, "RETENTION_SECONDS": int(loaded["RETENTION_DAYS"]) * 86400}
