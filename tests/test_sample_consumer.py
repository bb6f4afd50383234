"""The README's sample consumer accepts what the service sends and refuses a forged delivery."""

from __future__ import annotations

import threading
from http.server import ThreadingHTTPServer

import pytest

from app.routes import load_routes
from tools.sample_consumer import DEMO_SECRET, handler
from workers.webhook import attempt


@pytest.fixture
def sample(capsys):
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler(DEMO_SECRET))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


def test_the_demo_routes_point_at_it_with_its_secret():
    demo = load_routes("deploy/routes.demo.yml").consumers["demo"]
    assert demo.secret == DEMO_SECRET and demo.url == "http://127.0.0.1:9000/events"


def test_it_prints_each_event_and_flags_a_resend(sample, capsys):
    demo = load_routes("deploy/routes.demo.yml").consumers["demo"]
    url = f"http://127.0.0.1:{sample.server_port}/events"
    consumer = type(demo)(**{**demo.__dict__, "url": url})
    body = (b'{"id":"evt_1","type":"dlr.final","timestamp":"t",'
            b'"data":{"messageId":"m1","status":{"name":"DELIVERED"}}}')
    assert attempt(consumer, "evt_1", body).delivered
    assert attempt(consumer, "evt_1", body).delivered
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["dlr.final", "m1", "DELIVERED"]
    assert "duplicate" in out[1]


def test_a_forged_delivery_is_refused(sample):
    demo = load_routes("deploy/routes.demo.yml").consumers["demo"]
    url = f"http://127.0.0.1:{sample.server_port}/events"
    forger = type(demo)(**{**demo.__dict__, "url": url, "secret": "whsec_Zm9yZ2VkLXNlY3JldC0wMTIzNDU2Nzg5"})
    outcome = attempt(forger, "evt_1", b'{"id":"evt_1","type":"dlr.final","data":{}}')
    assert not outcome.delivered and outcome.status == 400
