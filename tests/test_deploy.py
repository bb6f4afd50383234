"""Deploy files parse, and every command in them names something that exists in the project.

No Docker engine runs here, so images are not built; what can go stale silently is checked:
YAML and config syntax, queue names, module paths, files copied into the image, the Redis
durability settings, and that no access log format can write a query string (tokens).
"""

from __future__ import annotations

import configparser
import importlib
import importlib.util
import logging
import re
import runpy
import shlex
from pathlib import Path

import pytest
import yaml

from app.keys import DELIVERY_QUEUE, QUEUE_NAME
from app.routes import load_routes

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
QUEUES = {QUEUE_NAME, DELIVERY_QUEUE}


def commands() -> list[str]:
    """Every process command line written in the Procfile, compose file, manifests and units."""
    found = [line.split(":", 1)[1].strip() for line in (ROOT / "Procfile").read_text().splitlines() if line]
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    found += [" ".join(s["command"]) for s in compose["services"].values() if "command" in s]
    for doc in yaml.safe_load_all((DEPLOY / "k8s" / "receiver.yaml").read_text()):
        if doc["kind"] == "Deployment":
            found += [" ".join(c["command"]) for c in doc["spec"]["template"]["spec"]["containers"]]
    for unit in (DEPLOY / "systemd").glob("*.service"):
        parser = configparser.ConfigParser(strict=False, interpolation=None)
        parser.read(unit)
        found.append(parser["Service"]["ExecStart"])
    return found


def test_every_process_kind_is_deployed_everywhere():
    text = "\n".join(commands())
    for needle in ("gunicorn", f"{QUEUE_NAME}", f"{DELIVERY_QUEUE}", "rq cron", "-m app.smpp"):
        assert needle in text


@pytest.mark.parametrize("command", commands())
def test_commands_name_real_things(command):
    words = shlex.split(command.replace("sh -c", "").replace("'", ""))
    text = " ".join(words)
    if "gunicorn" in text:
        assert "app:create_app()" in text
        config = re.search(r"-c\s+(\S+)", text).group(1)
        assert (ROOT / config).is_file()
        assert callable(importlib.import_module("app").create_app)
    elif "rq worker" in text:
        assert words[-1] in QUEUES, f"unknown queue in {command!r}"
        assert "--with-scheduler" in words  # RQ's retry intervals need a scheduler
    elif "rq cron" in text:
        importlib.import_module(words[-1])  # the cron config module exists
    elif words[-2:] == ["-m", "app.smpp"]:
        assert importlib.util.find_spec("app.smpp.__main__") is not None
    elif words[0] == "redis-server":  # compose mounts deploy/redis.conf there
        assert (DEPLOY / "redis.conf").is_file()
    else:
        pytest.fail(f"unexpected process command {command!r}")


def test_dockerfile_copies_what_exists_and_runs_as_non_root():
    lines = (DEPLOY / "Dockerfile").read_text().splitlines()
    for line in lines:
        if line.startswith("COPY "):
            source = line.split()[1]
            assert (ROOT / source).exists(), source
    assert any(line.startswith("USER ") and "root" not in line for line in lines)
    assert any(line.startswith("HEALTHCHECK") for line in lines)


def test_k8s_manifests_have_probes_resources_configmap_and_secret():
    docs = list(yaml.safe_load_all((DEPLOY / "k8s" / "receiver.yaml").read_text()))
    kinds = {doc["kind"] for doc in docs}
    assert {"ConfigMap", "Secret", "Deployment", "Service"} <= kinds
    web = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "receiver-web")
    container = web["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for doc in docs:
        if doc["kind"] == "Deployment":
            for c in doc["spec"]["template"]["spec"]["containers"]:
                assert c["resources"]["requests"]
    config_map = next(d for d in docs if d["kind"] == "ConfigMap")
    routes = config_map["data"]["routes.yml"]
    path = ROOT / "var" / "k8s-routes.yml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(routes)
    assert load_routes(path).consumers


def test_example_routes_file_is_valid():
    assert load_routes(DEPLOY / "routes.example.yml").consumers


def test_redis_conf_is_durable_and_never_evicts():
    settings = {}
    for line in (DEPLOY / "redis.conf").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.strip().partition(" ")
            settings[name] = value
    assert settings["appendonly"] == "yes"
    assert settings["appendfsync"] == "always"
    assert settings["maxmemory-policy"] == "noeviction"


def test_gunicorn_access_log_never_writes_query_strings(monkeypatch):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "unused")  # the file sets it when unset
    conf = runpy.run_path(str(DEPLOY / "gunicorn.conf.py"))
    assert conf["accesslog"] is None  # the app's JSON line is the one line per request
    fmt = conf["access_log_format"]  # for an operator who turns it on
    assert "%(U)s" in fmt
    for leaky in ("%(r)s", "%(q)s", "%(f)s"):  # request line, query, referer
        assert leaky not in fmt


def test_gunicorn_says_where_it_listens_though_its_workers_open_the_sockets(monkeypatch, caplog):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "unused")
    monkeypatch.setenv("HOST", "127.0.0.1")
    monkeypatch.setenv("PORT", "8099")
    conf = runpy.run_path(str(DEPLOY / "gunicorn.conf.py"))
    assert conf["reuse_port"] is True  # gunicorn then prints "Listening at:  (pid)", no address

    class Server:
        log = logging.getLogger("test.gunicorn")

    with caplog.at_level(logging.INFO, logger="test.gunicorn"):
        conf["when_ready"](Server())
    assert "http://127.0.0.1:8099" in caplog.text


def test_nginx_sample_matches_the_service_settings():
    text = (DEPLOY / "nginx.conf").read_text()
    assert text.count("{") == text.count("}")
    assert "client_max_body_size 1m;" in text  # == MAX_BODY_BYTES default
    assert "large_client_header_buffers 4 80k;" in text  # a request line of MAX_URL_BYTES (64 KiB) fits
    assert "$proxy_add_x_forwarded_for" in text  # one hop: TRUSTED_PROXIES=1
    assert "$request " not in text and "$request_uri " not in text.split("access_log")[0]


# docs/RELIABILITY.md: a job whose worker died is retried by RQ within heartbeat TTL (interval
# + 60 s) + maintenance interval, ~85 s; every place that starts a worker must say the same.
RQ_FLAGS = ["--maintenance-interval", "15", "--job-monitoring-interval", "10"]


def test_every_rq_worker_notices_abandoned_jobs_within_the_documented_bound():
    workers = [shlex.split(c.replace("sh -c", "").replace("'", "")) for c in commands() if "rq worker" in c]
    assert len(workers) >= 6  # Procfile, compose, k8s and systemd: worker and deliverer each
    for words in workers:
        at = words.index(RQ_FLAGS[0])
        assert words[at : at + len(RQ_FLAGS)] == RQ_FLAGS, words
    assert ", ".join(f'"{flag}"' for flag in RQ_FLAGS) in (ROOT / "tools" / "run.py").read_text()


def test_the_embedded_redis_fsyncs_every_write(r):
    """`make run` and the test suites run Redis as deploy/redis.conf does: AOF, appendfsync always."""
    assert r.config_get("appendonly") == {"appendonly": "yes"}
    assert r.config_get("appendfsync") == {"appendfsync": "always"}
    assert r.config_get("auto-aof-rewrite-min-size") == {"auto-aof-rewrite-min-size": str(256 * 1024**2)}


def test_every_rq_process_finds_redis_through_rq_settings():
    """Sentinel needs RQ's own settings (SPEC §12, workers/rq_settings.py): no rq command pins a URL."""
    rq_commands = [c for c in commands() if re.search(r"\brq (worker|cron)\b", c)]
    assert len(rq_commands) >= 8
    for command in rq_commands:
        assert "-c workers.rq_settings" in command.replace('", "', " "), command
