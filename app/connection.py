"""The one place a Redis client is made (SPEC §12), for every process.

- `make_client(config)`: through Sentinel when `REDIS_SENTINELS` is set (redis-py's
  `Sentinel(...).master_for(...)`: every new connection asks the sentinels where the primary is,
  and a connection to a demoted primary is dropped, so the client follows a failover), else
  `REDIS_URL`. A plain URL string is still accepted and means that URL.
- `rq_settings(config)`: the same choice in RQ's own settings (`SENTINEL` dict or `REDIS_URL`),
  which `rq worker -c workers.rq_settings` and `rq cron -c ...` read (Procfile).
- `Replication`: `REDIS_MIN_REPLICAS` / `REDIS_WAIT_MS`. A write that must survive a failover
  is followed by `WAIT` on the connection that made it; fewer confirmations than required
  raise `NotReplicated` (503 at ingest, a failed and retried job in a worker). With the
  default 0 nothing is sent: a single Redis pays nothing for it.
- Two planes (SPEC §12): the data plane (lanes, state, indexes, outboxes: everything but RQ)
  and the queue plane (RQ's queues, jobs and workers). On one Redis, or Sentinel, they are the
  same client. With `REDIS_CLUSTER_NODES` the data plane is a `RedisCluster` (keys carry lane
  hash tags, app/keys.py) and RQ stays on `REDIS_URL` (RQ does not run on a cluster).
  `make_client` returns the data-plane client; `queue_client(r)` the one RQ gets;
  `data_client(job.connection)` the data plane of a job running on RQ's connection.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import current_app
from redis import Redis, RedisError
from redis.client import Pipeline
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException
from redis.sentinel import Sentinel

from app import keys
from app.errors import NotReplicated

T = TypeVar("T")

# Short timeouts: when Redis is unreachable, ingest must answer 503 quickly so Infobip
# retries later, instead of holding its connection until it gives up on us.
TIMEOUTS = {"socket_timeout": 5, "socket_connect_timeout": 2, "health_check_interval": 30}
# A sentinel that does not answer within a second is skipped for the next one.
SENTINEL_TIMEOUTS = {"socket_timeout": 1, "socket_connect_timeout": 1}


def addresses(value: list[str] | str) -> list[tuple[str, int]]:
    """"h1:26379,h2:26379" (or its list) as [(host, port)]; raises ValueError when malformed."""
    items = value.split(",") if isinstance(value, str) else value
    found = []
    for item in (i.strip() for i in items if i.strip()):
        host, sep, port = item.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"{item!r} is not host:port")
        found.append((host, int(port)))
    return found


def make_client(source: Mapping[str, Any] | str) -> Redis:
    """The data-plane client: a `RedisCluster` when the config names cluster nodes (its
    `queue_client` the REDIS_URL one), else the client of the primary (`make_queue_client`)."""
    if isinstance(source, str) or not source.get("REDIS_CLUSTER_NODES"):
        return make_queue_client(source)
    return cluster_client(source["REDIS_CLUSTER_NODES"], source.get("REDIS_PASSWORD"),
                          int(source.get("DRAIN_LANES", 4)), make_queue_client(source))


def cluster_client(nodes: list[str] | str, password: str | None, lanes: int, queue: Redis) -> Redis:
    """A RedisCluster of the data plane; switches this process to lane hash tags (app/keys.py)."""
    keys.shard(lanes)
    client = RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in addresses(nodes)], password=password,
                          **{k: v for k, v in TIMEOUTS.items() if k != "health_check_interval"})
    client.queue_client = queue  # type: ignore[attr-defined]
    client.nodes_manager.initialize = _unreachable_as_connection_error(client.nodes_manager.initialize)
    return client  # type: ignore[return-value]


def _unreachable_as_connection_error(initialize: Callable[..., None]) -> Callable[..., None]:
    """redis-py re-reads the slot map after a failed call; when no node answers it raises
    RedisClusterException, which is not a RedisError. Raise it as the ConnectionError it comes
    from, so a cluster that is down is what one Redis down is everywhere: a RedisError (503 at
    ingest and the API, a retried job), not a 500."""
    def reread_slot_map(*args: Any, **kw: Any) -> None:
        try:
            initialize(*args, **kw)
        except RedisClusterException as err:
            if isinstance(err.__cause__, RedisError):  # no node reachable
                raise RedisConnectionError(str(err)) from err
            raise
    return reread_slot_map


def after_failure(r: Redis) -> None:
    """A cluster client that failed to reach a node re-reads the slot map, so the next call
    finds the replica that took over (redis-py's pipelines keep the dead node otherwise)."""
    manager = getattr(r, "nodes_manager", None)
    if manager is not None:
        with contextlib.suppress(RedisError):  # no node answers yet: the next failure tries again
            manager.initialize()


def on_data_plane(queue: Redis, work: Callable[[Redis], T]) -> T:
    """Run a job's `work` with its data-plane client (`data_client(queue)`, `queue` being the
    job's RQ connection); a Redis error refreshes a cluster's slot map before RQ retries."""
    r = data_client(queue)
    try:
        return work(r)
    except RedisError:
        after_failure(r)  # a cluster node died: the retry finds the replica that took over
        raise


def queue_client(r: Redis) -> Redis:
    """The client RQ's queues and jobs live on: `r` itself unless `r` is a cluster client."""
    return getattr(r, "queue_client", r)


_DATA: dict[tuple, Redis] = {}


def data_client(queue: Redis, config: Mapping[str, Any] | None = None) -> Redis:
    """The data plane of a job that RQ runs on `queue`: `queue` itself unless the config (the
    worker's settings) names cluster nodes; then one cluster client per process."""
    if config is None:
        from workers.settings import settings  # the worker's environment, read once

        config = settings()
    nodes = config.get("REDIS_CLUSTER_NODES")
    if not nodes:
        return queue
    key = (str(nodes), int(config.get("DRAIN_LANES", 4)))
    keys.shard(key[1])
    if key not in _DATA:
        _DATA[key] = cluster_client(nodes, config.get("REDIS_PASSWORD"), key[1], queue)
    _DATA[key].queue_client = queue  # type: ignore[attr-defined]  # the job's own connection
    return _DATA[key]


def make_queue_client(source: Mapping[str, Any] | str) -> Redis:
    """A client of the primary: through Sentinel when the config names sentinels, else REDIS_URL."""
    if isinstance(source, str):
        return Redis.from_url(source, **TIMEOUTS)
    if source.get("REDIS_SENTINELS"):
        return sentinel(source).master_for(source["REDIS_SENTINEL_MASTER"], **TIMEOUTS)
    password = source.get("REDIS_PASSWORD")
    return Redis.from_url(source["REDIS_URL"], **TIMEOUTS, **({"password": password} if password else {}))


def sentinel(config: Mapping[str, Any]) -> Sentinel:
    return Sentinel(
        addresses(config["REDIS_SENTINELS"]),
        sentinel_kwargs={**SENTINEL_TIMEOUTS, "password": config.get("REDIS_SENTINEL_PASSWORD")},
        password=config.get("REDIS_PASSWORD"),
    )


def rq_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """RQ's settings for the same Redis as `make_client(config)` (rq.cli.helpers reads them)."""
    if not config.get("REDIS_SENTINELS"):
        return {"REDIS_URL": config["REDIS_URL"], "SENTINEL": None}
    return {
        "REDIS_URL": None,
        "SENTINEL": {
            "INSTANCES": addresses(config["REDIS_SENTINELS"]),
            "MASTER_NAME": config["REDIS_SENTINEL_MASTER"],
            "PASSWORD": config.get("REDIS_PASSWORD"),
            # The worker raises the socket timeout above its blocking dequeue's by itself.
            "CONNECTION_KWARGS": {k: v for k, v in TIMEOUTS.items() if k != "socket_timeout"},
            "SENTINEL_KWARGS": {**SENTINEL_TIMEOUTS, "password": config.get("REDIS_SENTINEL_PASSWORD")},
        },
    }


def get_redis() -> Redis:
    return current_app.extensions["redis"]


@dataclass(frozen=True)
class Replication:
    """How many replicas must hold a write before it counts as done, and how long to wait."""

    replicas: int = 0
    timeout_ms: int = 0

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Replication:
        return cls(int(config.get("REDIS_MIN_REPLICAS", 0)), int(config.get("REDIS_WAIT_MS", 0)))

    def check(self, acks: int | None) -> None:
        """Raise NotReplicated unless `acks` (WAIT's answer) reaches the required count."""
        if self.replicas and (acks or 0) < self.replicas:
            raise NotReplicated(f"{acks or 0} of {self.replicas} replicas confirmed the write "
                                f"within {self.timeout_ms} ms; retry later")

    def transaction(self, r: Redis) -> Pipeline:
        """A MULTI/EXEC pipeline of `r` that, when replicas are required, sends WAIT after EXEC
        (its answer in `.acks`). On a cluster the pipeline is redis-py's and `confirm` waits."""
        if not self.replicas or keys.sharded():
            return r.pipeline(transaction=True)
        return WaitingPipeline(r, self.replicas, self.timeout_ms)

    def confirm(self, r: Redis, pipe: Pipeline, key: str) -> None:
        """After `transaction(r)` ran, whose keys share `key`'s slot: raise NotReplicated unless
        enough replicas hold it."""
        if self.replicas:
            self.check(getattr(pipe, "acks", None) if not keys.sharded() else self.in_slots(r, [key]))

    def in_slots(self, r: Redis, written: list[str]) -> int:
        """On a cluster: how many replicas (the fewest over the primaries that hold `written`'s
        slots) have every write made so far to those primaries. WAIT counts the writes of the
        connection it is sent on, and redis-py's cluster client does not say which connection
        carried ours; but a primary sends its replicas one ordered stream, so a replica that
        confirms a later write (a marker in the same slot, written and waited for on one
        connection) holds ours as well. A failover in between makes the marker's write fail
        (MOVED, or no answer): a RedisError, never a false confirmation."""
        markers: dict[str, str] = {}
        for key in written:
            node = r.get_node_from_key(key)  # type: ignore[attr-defined]
            markers.setdefault(node.name, _slot_marker(key))
        acks = []
        for name, marker in markers.items():
            pipe = r.get_redis_connection(r.get_node(node_name=name)).pipeline(transaction=False)  # type: ignore[attr-defined]
            acks.append(pipe.set(marker, b"1").wait(self.replicas, self.timeout_ms).execute()[1])
        return min(acks, default=self.replicas)


def _slot_marker(key: str) -> str:
    """A key in the same cluster slot as `key`: the same hash tag (`wait:{3}` for `inbox:{3}`),
    or `key` itself as the tag when it has none (`{quarantine}:wait`)."""
    start = key.find("{")
    end = key.find("}", start + 1)
    if start >= 0 and end > start + 1:
        return f"wait:{key[start:end + 1]}"
    return f"{{{key}}}:wait"


NO_REPLICAS = Replication()


class WaitingPipeline(Pipeline):
    """MULTI/EXEC, then WAIT on the same connection. WAIT counts the replicas that hold the
    writes of the connection it is sent on; a pipeline gives its connection back to the pool
    when it is done, so WAIT must be sent here, before that."""

    def __init__(self, r: Redis, replicas: int, timeout_ms: int) -> None:
        super().__init__(r.connection_pool, r.response_callbacks, True, None)
        self.replicas, self.timeout_ms = replicas, timeout_ms
        self.acks: int | None = None

    def _execute_transaction(self, connection: Any, commands: Any, raise_on_error: bool) -> list:
        result = super()._execute_transaction(connection, commands, raise_on_error)
        connection.send_command("WAIT", self.replicas, self.timeout_ms)
        self.acks = int(connection.read_response())
        return result
