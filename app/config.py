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

from app.codes import LANGUAGES
from app.connection import addresses
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
        # An MO forward by GET carries the message in its URL: 2,000 Cyrillic characters as
        # %text% and UCS-2 %bin% are ~20 KB. Past this cap the answer is a JSON 414.
        "MAX_URL_BYTES": env.int("MAX_URL_BYTES", 64 * 1024),
        "DRAIN_LANES": env.int("DRAIN_LANES", 4),
        "QUARANTINE_MAX": env.int("QUARANTINE_MAX", 10_000),
        "EVENT_STREAM_MAXLEN": env.int("EVENT_STREAM_MAXLEN", 1_000_000),
        # Language of the status and error descriptions filled in from Infobip's tables (app/codes.py).
        "CODE_DESCRIPTIONS": env.str("CODE_DESCRIPTIONS", "en").strip().lower(),
        **load_pull_and_reconcile(env),
        # Development mode allows running without ingest credentials (`make run` sets it).
        "DEV_MODE": env.bool("DEV_MODE", False),
        # /metrics without a bearer key, for a scraper on a private network.
        "METRICS_PUBLIC": env.bool("METRICS_PUBLIC", False),
        **load_infobip(env),
        # --- SMPP receiver (SPEC §13): the `smpp` process, started only when SMPP_HOST is set ---
        "SMPP_HOST": env.str("SMPP_HOST", "") or None,
        "SMPP_SECONDARY_HOST": env.str("SMPP_SECONDARY_HOST", "") or None,
        "SMPP_TLS": env.bool("SMPP_TLS", False),
        "SMPP_PORT": env.int("SMPP_PORT", 0) or None,  # 8888, or 8887 with SMPP_TLS
        "SMPP_TLS_CA": env.str("SMPP_TLS_CA", "") or None,  # a CA file to trust besides the system's
        "SMPP_SYSTEM_ID": env.str("SMPP_SYSTEM_ID", ""),
        "SMPP_PASSWORD": env.str("SMPP_PASSWORD", ""),
        "SMPP_SYSTEM_TYPE": env.str("SMPP_SYSTEM_TYPE", ""),
        "SMPP_SESSIONS": env.int("SMPP_SESSIONS", 1),
        "SMPP_BIND": env.str("SMPP_BIND", "receiver"),
        "SMPP_KEEPALIVE": env.float("SMPP_KEEPALIVE", 15.0),  # enquire_link after this quiet time
        "SMPP_RECONNECT_MAX": env.float("SMPP_RECONNECT_MAX", 60.0),  # backoff cap, seconds
        # --- Dashboard (SPEC §10) ---
        # Signs the dashboard's session cookie; when unset it is derived from API_KEYS, so every
        # web process agrees and changing the keys signs everyone out.
        "SECRET_KEY": env.str("SECRET_KEY", "") or None,
        "DASHBOARD_SESSION_HOURS": env.int("DASHBOARD_SESSION_HOURS", 12),
        # Failed sign-ins allowed per source address in DASHBOARD_LOGIN_WINDOW seconds.
        "DASHBOARD_LOGIN_ATTEMPTS": env.int("DASHBOARD_LOGIN_ATTEMPTS", 5),
        "DASHBOARD_LOGIN_WINDOW": env.int("DASHBOARD_LOGIN_WINDOW", 900),
        # SPEC §12: Sentinel and replicated writes (app/connection.py).
        "REDIS_SENTINELS": env.str("REDIS_SENTINELS", "") or None,  # "host:port,host:port"
        "REDIS_SENTINEL_MASTER": env.str("REDIS_SENTINEL_MASTER", "mymaster"),
        "REDIS_PASSWORD": env.str("REDIS_PASSWORD", "") or None,
        "REDIS_SENTINEL_PASSWORD": env.str("REDIS_SENTINEL_PASSWORD", "") or None,
        "REDIS_MIN_REPLICAS": env.int("REDIS_MIN_REPLICAS", 0),
        "REDIS_WAIT_MS": env.int("REDIS_WAIT_MS", 500),
        "REDIS_CLUSTER_NODES": env.str("REDIS_CLUSTER_NODES", "") or None,  # the data plane on a cluster
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
    minimums = {"TRUSTED_PROXIES": 0, "RETENTION_DAYS": 1, "MAX_BODY_BYTES": 1, "MAX_URL_BYTES": 1,
                "DRAIN_LANES": 1, "QUARANTINE_MAX": 1, "MO_PARTS_TIMEOUT": 1, "DASHBOARD_SESSION_HOURS": 1,
                "DASHBOARD_LOGIN_ATTEMPTS": 1, "DASHBOARD_LOGIN_WINDOW": 1}
    for name, minimum in minimums.items():
        if int(config[name]) < minimum:
            raise ConfigError(f"{name} must be at least {minimum}")
    if config["CODE_DESCRIPTIONS"] not in LANGUAGES:
        raise ConfigError(f"CODE_DESCRIPTIONS must be one of {', '.join(LANGUAGES)}")
    check_infobip(config)
    check_redis(config)
    check_pull_and_reconcile(config)
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
def check_redis(config: Mapping[str, Any]) -> None:
    """SPEC §12: sentinel addresses that parse, and a WAIT that can be satisfied at all."""
    for name in ("REDIS_SENTINELS", "REDIS_CLUSTER_NODES"):
        if config.get(name):
            try:
                addresses(config[name])
            except ValueError as err:
                raise ConfigError(f"{name}: {err}") from err
    if int(config.get("REDIS_MIN_REPLICAS", 0)) < 0:
        raise ConfigError("REDIS_MIN_REPLICAS must be at least 0")
    if int(config.get("REDIS_MIN_REPLICAS", 0)) and int(config.get("REDIS_WAIT_MS", 0)) < 1:
        raise ConfigError("REDIS_WAIT_MS must be at least 1 when REDIS_MIN_REPLICAS is set")


# --- SPEC §9.1, §9.3: pull mode and reconciliation (app/infobip/pull.py, reconcile.py) --------


def load_pull_and_reconcile(env: Env) -> dict[str, Any]:
    return {
        "PULL_REPORTS": env.bool("PULL_REPORTS", False),  # poll /sms/1/reports
        "PULL_INBOX": env.bool("PULL_INBOX", False),  # poll /sms/1/inbox/reports
        "PULL_LIMIT": env.int("PULL_LIMIT", 1000),  # items per page (Infobip's maximum: 1000)
        "PULL_INTERVAL": env.int("PULL_INTERVAL", 5),  # seconds between polls once a page is not full
        "RECONCILE_AFTER": env.int("RECONCILE_AFTER", 3600),  # seconds without news; 0: off
        "RECONCILE_RATE": env.float("RECONCILE_RATE", 5.0),  # calls to /sms/1/logs per second
    }


def check_pull_and_reconcile(config: Mapping[str, Any]) -> None:
    pulling = config.get("PULL_REPORTS") or config.get("PULL_INBOX")
    if pulling and not config.get("INFOBIP_BASE_URL"):
        raise ConfigError("PULL_REPORTS/PULL_INBOX need INFOBIP_BASE_URL (and its credentials)")
    if not 1 <= int(config.get("PULL_LIMIT", 1000)) <= 1000:
        raise ConfigError("PULL_LIMIT must be from 1 to 1000 (Infobip's maximum page)")
    if int(config.get("PULL_INTERVAL", 5)) < 1:
        raise ConfigError("PULL_INTERVAL must be at least 1 second")
    if int(config.get("RECONCILE_AFTER", 3600)) < 0:
        raise ConfigError("RECONCILE_AFTER must be 0 (off) or a number of seconds")
    if not float(config.get("RECONCILE_RATE", 5.0)) > 0:
        raise ConfigError("RECONCILE_RATE must be more than 0 calls per second")
