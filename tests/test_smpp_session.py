"""The smpp process's sessions (app/smpp/__main__.py, app/smpp/session.py) against the fake
Infobip SMSC (a real SMPP 3.4 server on a socket) and the suite's real Redis."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import redis

from app import config, quarantine, store
from app.connection import make_client
from app.keys import EVENT_STREAM
from app.smpp import status
from app.smpp.__main__ import Runner, settings
from tests.test_smpp_pdu_map import SEED_OK, SEED_OK_TLVS
from tools import wait
from tools.fake_infobip.smpp import FakeSmsc, receipt

SYSTEM_ID, PASSWORD = "acme", "s3cret-9"


@pytest.fixture
def smsc() -> Iterator[FakeSmsc]:
    server = FakeSmsc(SYSTEM_ID, PASSWORD, window=50).start()
    yield server
    server.close()


class Running:
    def __init__(self, runner: Runner, sessions: int) -> None:
        self.runner = runner
        self.threads = [
            threading.Thread(target=runner.run_session, args=(n,), daemon=True) for n in range(sessions)
        ]
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        self.runner.stop.set()
        for thread in self.threads:
            thread.join(15)
        assert not any(t.is_alive() for t in self.threads)


@pytest.fixture
def start(redis_server, r) -> Iterator[Any]:
    started: list[Running] = []

    def make(port: int, client: redis.Redis | None = None, **overrides: Any) -> Running:
        """Sessions on the data plane (`make_client`, as app/smpp/__main__.py), or on `client`."""
        cfg = {
            **config.load(),
            "REDIS_URL": redis_server.url,
            "SMPP_HOST": "127.0.0.1",
            "SMPP_PORT": port,
            "SMPP_SYSTEM_ID": SYSTEM_ID,
            "SMPP_PASSWORD": PASSWORD,
            "SMPP_RECONNECT_MAX": 0.5,
            "QUARANTINE_MAX": 100,
            **overrides,
        }
        running = Running(Runner(settings(cfg), client or make_client(cfg)), cfg.get("SMPP_SESSIONS", 1))
        started.append(running)
        return running

    yield make
    for running in started:
        running.stop()


def settled(smsc: FakeSmsc, keys: set[str], what: str = "acknowledged") -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        state = smsc.state()
        return state if keys <= set(state[what]) and state["outstanding"] == 0 else None

    wait.wait_for(done, 20, f"the fake SMSC to see every deliver_sm {what}", interval=0.05)
    return smsc.state()


def stream(r: redis.Redis) -> list[dict[str, Any]]:
    return [orjson.loads(fields[b"event"]) for _, fields in r.xrange(EVENT_STREAM)]


def test_reports_over_several_sessions_reach_state_once_each(smsc, start, r, work):
    started = time.time()
    start(smsc.port, SMPP_SESSIONS=3)
    wait.wait_for(lambda: smsc.state()["bound"] == 3, 10, "three receiver binds")
    keys = {f"m{n}" for n in range(300)}
    smsc.deliver([receipt(k) for k in sorted(keys)])
    state = settled(smsc, keys, "acked")
    assert state["statuses"] == {"0": 300} and state["binds"] == {"receiver": 3}
    work()
    current = store.get_message(r, "m7")
    assert current["status"]["name"] == "DELIVERED_TO_HANDSET" and current["source"] == "smpp"
    assert len({e["id"] for e in stream(r)}) == 300
    bound = status.binds(r, 3)
    assert [b["state"] for b in bound] == ["bound"] * 3
    assert all(started <= b["since"] <= b["at"] for b in bound)  # bound since (the dashboard shows it)
    assert sum(b.get("acknowledged", 0) for b in bound) <= 300


def test_a_malformed_pdu_is_quarantined_and_the_session_goes_on(smsc, start, r, work, api):
    start(smsc.port)
    garbage = {"key": "bad", "raw": "000000140000000500000000000000010000ffff"}
    undecodable = {"key": "gsm", "source_addr": "385", "short_message_hex": "80ff"}
    smsc.deliver([garbage, undecodable, receipt("after")])
    state = settled(smsc, {"after"}, "acked")
    assert set(smsc.state()["refused"]) == {"bad", "gsm"}
    assert state["binds"] == {"receiver": 1}, "one bind: the session was not dropped"
    kept = quarantine.entries(r)
    assert len(kept) == 2 and all(e["source"] == "smpp" for e in kept)
    for entry in kept:  # a replay runs the item through its endpoint, or says there is none
        answer = api.post(f"/api/quarantine/{entry['id']}/replay")
        assert answer.status_code == 200 and answer.json["status"] in (400, 404)
    work()
    assert store.get_message(r, "after") is not None


def test_redis_down_answers_rsyserr_and_nothing_is_acknowledged(smsc, start, data_plane_down):
    start(smsc.port, data_plane_down(make_client))
    smsc.deliver([receipt("m1")])
    wait.wait_for(lambda: smsc.state()["statuses"].get("8", 0) >= 2, 20, "ESME_RSYSERR answers, resent")
    assert smsc.state()["acked"] == []


def test_number_checks_and_multipart_mo_become_events(smsc, start, r, work):
    start(smsc.port)
    smsc.deliver(
        [
            {
                "key": "hlr",
                "source_addr": "38591xxxxxxx",
                "esm_class": 4,
                "short_message": SEED_OK,
                "tlvs": SEED_OK_TLVS,
            },
            {
                "key": "p2",
                "source_addr": "385",
                "destination_addr": "41",
                "short_message": "world",
                "tlvs": {"sar_msg_ref_num": 9, "sar_total_segments": 2, "sar_segment_seqnum": 2},
            },
            {
                "key": "p1",
                "source_addr": "385",
                "destination_addr": "41",
                "esm_class": 0x40,
                "short_message_hex": "0608040009020148656c6c6f20",
            },
        ]
    )
    settled(smsc, {"hlr", "p1", "p2"}, "acked")
    work()
    by_type = {e["type"]: e for e in stream(r)}
    assert by_type["mo.received"]["data"]["text"] == "Hello world"
    checked = by_type["number.checked"]
    assert checked["data"]["imsi"] == "219101100935850" and checked["data"]["source"] == "smpp"
    assert store.get_number_check(r, "40072910491427628")["mccMnc"] == "21910"
    smsc.deliver(
        [
            {
                **receipt("x"),
                "key": "hlr-again",
                "source_addr": "38591xxxxxxx",
                "short_message": SEED_OK,
                "tlvs": SEED_OK_TLVS,
            }
        ]
    )
    settled(smsc, {"hlr-again"}, "acked")
    work()
    assert [e["type"] for e in stream(r)].count("number.checked") == 1, "a resent result is one event"


def test_the_same_report_by_smpp_and_by_http_is_one_event(smsc, start, r, work, infobip):
    start(smsc.port)
    smsc.deliver([receipt("m1", done="2612071003")])
    settled(smsc, {"m1"}, "acked")
    work()
    pushed = {
        "results": [
            {
                "messageId": "m1",
                "doneAt": "2026-12-07T10:03:41.250+0000",
                "status": {"groupId": 3, "groupName": "DELIVERED", "id": 5, "name": "DELIVERED_TO_HANDSET"},
                "error": {"groupId": 0, "groupName": "OK", "id": 0, "name": "NO_ERROR"},
            }
        ]
    }
    assert infobip.dlr(pushed).status_code == 200
    work()
    assert len(stream(r)) == 1


def test_an_unreachable_primary_fails_over_to_the_secondary_host(smsc, start, r):
    # Nothing listens on 127.0.0.2 (the fake binds 127.0.0.1 only): connection refused.
    start(smsc.port, SMPP_HOST="127.0.0.2", SMPP_SECONDARY_HOST="127.0.0.1")
    wait.wait_for(lambda: smsc.state()["bound"] == 1, 20, "a bind on the secondary host")
    wait.wait_for(lambda: status.binds(r, 1)[0]["state"] == "bound", 10, "the bind state")
    assert status.binds(r, 1)[0]["host"] == "127.0.0.1"


def test_a_refused_bind_is_retried_with_backoff(smsc, start, r):
    start(smsc.port, SMPP_PASSWORD="wrong")
    wait.wait_for(lambda: smsc.state()["refusedBinds"] >= 2, 20, "refused binds, retried")
    assert smsc.state()["bound"] == 0
    assert status.binds(r, 1)[0]["state"] in ("down", "connecting")


def test_quiet_links_get_enquire_link_and_stop_unbinds(smsc, start, r):
    running = start(smsc.port, SMPP_KEEPALIVE=0.3)
    wait.wait_for(lambda: smsc.state()["enquireLinks"] >= 2, 10, "enquire_link on a quiet link")
    running.stop()
    assert smsc.state()["unbinds"] == 1
    assert status.binds(r, 1)[0]["state"] == "down"


def test_readyz_and_metrics_show_each_binds_state(smsc, start, r, config, api):
    from app import create_app

    start(smsc.port, SMPP_SESSIONS=2)
    wait.wait_for(lambda: [b["state"] for b in status.binds(r, 2)] == ["bound"] * 2, 10, "two binds")
    client = create_app({**config, "SMPP_HOST": "127.0.0.1", "SMPP_SESSIONS": 3}).test_client()
    ready = client.get("/readyz").json
    assert [b["state"] for b in ready["smpp"]] == ["bound", "bound", "down"]
    text = client.get("/metrics", headers={"Authorization": f"Bearer {config['API_KEYS'][0]}"}).text
    assert 'receiver_smpp_bound{session="0"} 1.0' in text and 'receiver_smpp_bound{session="2"} 0.0' in text


def test_tls_binds_with_a_trusted_certificate(tmp_path, start, r, work):
    import shutil
    import ssl
    import subprocess

    if not shutil.which("openssl"):
        pytest.skip("openssl is not installed")
    pem = tmp_path / "smsc.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
            "-keyout",
            pem,
            "-out",
            pem,
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pem)
    tls = FakeSmsc(SYSTEM_ID, PASSWORD, tls=context).start()
    try:
        start(tls.port, SMPP_HOST="localhost", SMPP_TLS=True, SMPP_TLS_CA=str(pem))
        tls.deliver([receipt("secure")])
        settled(tls, {"secure"}, "acked")
        work()
        assert store.get_message(r, "secure")["source"] == "smpp"
    finally:
        tls.close()


def test_the_default_ports_and_a_bad_configuration():
    from app.errors import ConfigError

    base = {**config.load(), "SMPP_HOST": "h", "SMPP_SYSTEM_ID": "id", "SMPP_PASSWORD": "pw"}
    assert settings(base)["SMPP_PORT"] == 8888
    assert settings({**base, "SMPP_TLS": True})["SMPP_PORT"] == 8887
    for bad in (
        {"SMPP_BIND": "transmitter"},
        {"SMPP_PASSWORD": "123456789"},
        {"SMPP_SESSIONS": 0},
        {"SMPP_SYSTEM_ID": ""},
    ):
        with pytest.raises(ConfigError):
            settings({**base, **bad})


def test_a_hand_off_that_fails_by_a_bug_quarantines_instead_of_looping(smsc, start, r, monkeypatch):
    from app import handoff

    def broken(*_args: Any, **_kw: Any) -> None:
        raise KeyError("a bug")

    monkeypatch.setattr(handoff, "accept", broken)
    start(smsc.port)
    smsc.deliver([receipt("poison")])
    settled(smsc, {"poison"}, "refused")
    assert [e["reason"] for e in quarantine.entries(r)] == ["hand-off failed"]
