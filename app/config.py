"""Configuration from the environment (12-factor); a `.env` file is read when present.

Every variable of SPEC §7 is read here and nowhere else. `load()` returns plain Flask config
keys; `check()` refuses configurations that would run insecurely or cannot work, so a mistake
stops start-up instead of surfacing as a 500 later.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from environs import Env

from app.errors import ConfigError

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_ROUTES_FILE = "routes.yml"  # used when present and ROUTES_FILE is not set


def load() -> dict[str, Any]:
    env = Env()
    env.read_env()  # .env in the working directory, if any
    return {
        "REDIS_URL": env.str("REDIS_URL", DEFAULT_REDIS_URL),
        "WEBHOOK_TOKEN": env.str("WEBHOOK_TOKEN", "") or None,
        "WEBHOOK_BASIC_USER": env.str("WEBHOOK_BASIC_USER", "") or None,
        "WEBHOOK_BASIC_PASSWORD": env.str("WEBHOOK_BASIC_PASSWORD", "") or None,
        "WEBHOOK_ALLOWED_IPS": env.list("WEBHOOK_ALLOWED_IPS", []),
        "TRUSTED_PROXIES": env.int("TRUSTED_PROXIES", 0),
        # "k1, k2" is how people write a comma list: a key never starts or ends with a space.
        "API_KEYS": [key.strip() for key in env.list("API_KEYS", []) if key.strip()],
        "ROUTES_FILE": env.str("ROUTES_FILE", "") or None,
        "MO_URL_TEMPLATE": env.str("MO_URL_TEMPLATE", "") or None,
        "RETENTION_DAYS": env.int("RETENTION_DAYS", 7),
        # Parts of a long MO still missing after this many seconds are emitted as they are,
        # flagged incomplete (30 minutes, as Kannel).
        "MO_PARTS_TIMEOUT": env.int("MO_PARTS_TIMEOUT", 1800),
        "MAX_BODY_BYTES": env.int("MAX_BODY_BYTES", 1024 * 1024),
        "DRAIN_LANES": env.int("DRAIN_LANES", 4),
        "QUARANTINE_MAX": env.int("QUARANTINE_MAX", 10_000),
        "EVENT_STREAM_MAXLEN": env.int("EVENT_STREAM_MAXLEN", 1_000_000),
        # Development mode allows running without ingest credentials (`make run` sets it).
        "DEV_MODE": env.bool("DEV_MODE", False),
        # /metrics without a bearer key, for a scraper on a private network.
        "METRICS_PUBLIC": env.bool("METRICS_PUBLIC", False),
        **load_infobip(env),
        # --- SPEC §11: opt-outs and replies ---
        # This service's address as Infobip reaches it: replies carry PUBLIC_URL/infobip/dlr
        # (with the ingest credentials) as their notifyUrl, so their reports come back here.
        "PUBLIC_URL": env.str("PUBLIC_URL", "") or None,
        # A reply whose send timed out is looked up in /sms/1/logs this many seconds later
        # (Infobip's logs may lag), and sent again only if it is not there.
        "REPLY_LOOKUP_DELAY": env.float("REPLY_LOOKUP_DELAY", 30.0),
    }


def check(config: Mapping[str, Any]) -> dict[str, Any]:
    """Validate and derive values; raise ConfigError with a message an operator can act on."""
    has_basic = bool(config["WEBHOOK_BASIC_USER"] and config["WEBHOOK_BASIC_PASSWORD"])
    if bool(config["WEBHOOK_BASIC_USER"]) != bool(config["WEBHOOK_BASIC_PASSWORD"]):
        raise ConfigError("set both WEBHOOK_BASIC_USER and WEBHOOK_BASIC_PASSWORD, or neither")
    if not (has_basic or config["WEBHOOK_TOKEN"]) and not config["DEV_MODE"]:
        raise ConfigError(
            "no ingest credentials: set WEBHOOK_TOKEN and/or WEBHOOK_BASIC_USER/WEBHOOK_BASIC_PASSWORD "
            "(or DEV_MODE=1 for local development only)"
        )
    try:
        networks = [ipaddress.ip_network(c.strip(), strict=False) for c in config["WEBHOOK_ALLOWED_IPS"]]
    except ValueError as err:
        raise ConfigError(f"WEBHOOK_ALLOWED_IPS: {err}") from err
    minimums = {"TRUSTED_PROXIES": 0, "RETENTION_DAYS": 1, "MAX_BODY_BYTES": 1, "DRAIN_LANES": 1,
                "QUARANTINE_MAX": 1, "MO_PARTS_TIMEOUT": 1}
    for name, minimum in minimums.items():
        if int(config[name]) < minimum:
            raise ConfigError(f"{name} must be at least {minimum}")
    check_infobip(config)
    public = config.get("PUBLIC_URL")
    if public and not (public.startswith(("http://", "https://")) and len(public.split("/")[2]) > 0):
        raise ConfigError("PUBLIC_URL must be an http(s) URL, e.g. https://sms.example.com")
    routes_file = config["ROUTES_FILE"]
    if routes_file and not Path(routes_file).is_file():
        raise ConfigError(f"ROUTES_FILE {routes_file!r} does not exist")
    return {
        "ROUTES_PATH": routes_file or (DEFAULT_ROUTES_FILE if Path(DEFAULT_ROUTES_FILE).is_file() else None),
        "ALLOWED_NETWORKS": networks,
        "MAX_CONTENT_LENGTH": int(config["MAX_BODY_BYTES"]),
        "RETENTION_SECONDS": int(config["RETENTION_DAYS"]) * 86400,
    }


# --- SPEC §9: calls to Infobip (app/infobip/) -----------------------------------------------


def load_infobip(env: Env) -> dict[str, Any]:
    return {
        # Unset: no call to Infobip is made (pull, reconciliation, replies off); all else works.
        "INFOBIP_BASE_URL": env.str("INFOBIP_BASE_URL", "").strip().rstrip("/") or None,
        "INFOBIP_API_KEY": env.str("INFOBIP_API_KEY", "") or None,  # Authorization: App <key>
        "INFOBIP_USERNAME": env.str("INFOBIP_USERNAME", "") or None,  # or HTTP Basic
        "INFOBIP_PASSWORD": env.str("INFOBIP_PASSWORD", "") or None,
        "INFOBIP_TIMEOUT": env.float("INFOBIP_TIMEOUT", 10.0),  # seconds, connect and read
    }


def check_infobip(config: Mapping[str, Any]) -> None:
    base = config.get("INFOBIP_BASE_URL")
    if not base:
        return
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError("INFOBIP_BASE_URL must be a URL like https://xxxxx.api.infobip.com")
    if "@" in parts.netloc:  # it would end up in logs; the header is the place for credentials
        raise ConfigError("INFOBIP_BASE_URL must not hold credentials: use INFOBIP_API_KEY or "
                          "INFOBIP_USERNAME/INFOBIP_PASSWORD")
    if bool(config.get("INFOBIP_USERNAME")) != bool(config.get("INFOBIP_PASSWORD")):
        raise ConfigError("set both INFOBIP_USERNAME and INFOBIP_PASSWORD, or neither")
    if not (config.get("INFOBIP_API_KEY") or config.get("INFOBIP_USERNAME")):
        raise ConfigError("INFOBIP_BASE_URL is set: set INFOBIP_API_KEY, or INFOBIP_USERNAME and "
                          "INFOBIP_PASSWORD")
    if not float(config.get("INFOBIP_TIMEOUT", 10.0)) > 0:
        raise ConfigError("INFOBIP_TIMEOUT must be more than 0 seconds")
