"""`flask simulate` against a real HTTP server running the app, and `flask stats` after it."""

from __future__ import annotations

import json
import threading

import pytest
from werkzeug.serving import make_server

from app import create_app, simulate
from tests.conftest import TOKEN
from tools.wait import wait_for


@pytest.fixture
def live_url(app):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(10)


def run(app, *args: str):
    result = app.test_cli_runner().invoke(args=list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_campaign_shapes_follow_infobip():
    calls = list(simulate.campaign(250, 100, intermediate=1.0, xml=0.0, resend=0.0))
    assert [c.count for c in calls] == [100, 100, 100, 100, 100]  # 500 reports: one intermediate each
    assert all(c.path == "/infobip/dlr" and c.content_type == "application/json" for c in calls)
    xml = list(simulate.campaign(10, 100, intermediate=0.0, xml=1.0, resend=1.0))
    assert len(xml) == 2 and xml[0] == xml[1]  # a resend is the same bucket again
    assert xml[0].body.startswith(b"<reportResponse><results><result>")


def test_long_mo_parts_are_sent_out_of_order_with_udh():
    parts = list(simulate.inbound(1, long_ratio=1.0))
    assert len(parts) == 3
    assert {p.query["esmclass"] for p in parts} == {"64"}
    assert sorted(bytes.fromhex(p.query["bin"])[5] for p in parts) == [1, 2, 3]


def test_mo_by_the_operators_template(app):
    call = simulate.from_template("/in/%Receiver%/sms.php?who=%sender%&what=%TEXT%&output=xml",
                                  {"sender": "38598123123", "receiver": "41 79", "text": "ABC"})
    assert (call.method, call.path) == ("GET", "/in/41%2079/sms.php")
    assert call.query == {"who": "38598123123", "what": "ABC", "output": "xml"}
    calls = list(simulate.inbound(4, long_ratio=1.0, template="/infobip/mo?who=%sender%&what=%text%"))
    assert len(calls) == 4 and all(set(c.query) == {"who", "what"} for c in calls)


def test_simulate_then_stats(app, live_url, work, r):
    output = run(app, "simulate", "--url", live_url, "--token", TOKEN, "--messages", "300",
                 "--mo", "10", "--rate", "1000", "--resend", "0.5")
    summary = json.loads(output[output.index("{"):])
    assert summary["answers"].get("200") == summary["requests"]
    work()
    stats = json.loads(run(app, "stats"))
    [bulk] = stats["recentBulks"]
    assert bulk["total"] == 300 and sum(bulk["byGroup"].values()) == 300
    assert stats["backlog"]["inbox"] == 0 and stats["backlog"]["quarantined"] == 0
    assert stats["consumers"]["sms-events"]["streamLength"] >= 300 + 10


@pytest.fixture
def via_fake(config, fake_infobip):
    """Listed before `app`: the app is made with INFOBIP_* pointing at the fake Infobip."""
    config.update(fake_infobip.config())
    return fake_infobip


def test_simulate_through_the_fake_infobip_which_pushes_the_reports(via_fake, app, live_url, work, r):
    output = run(app, "simulate", "--url", live_url, "--token", TOKEN, "--messages", "150", "--bucket", "100",
                 "--intermediate", "1", "--mo", "0", "--via-infobip")
    summary = json.loads(output[output.index("{"):])
    assert summary["sentThroughInfobip"] == {"PENDING": 150}

    def pushed() -> int:
        return sum(len(p["messageIds"]) for p in via_fake.control.pushes() if p["outcome"] == "delivered")

    wait_for(lambda: pushed() == 300, 20, "150 intermediate and 150 final reports pushed")
    work()
    [bulk] = json.loads(run(app, "stats"))["recentBulks"]
    assert bulk["total"] == 150 and bulk["byGroup"] == {"DELIVERED": 150}


def test_simulate_never_sends_through_a_real_infobip(config):
    app = create_app({**config, "INFOBIP_BASE_URL": "https://xxxxx.api.infobip.com", "INFOBIP_API_KEY": "k"})
    result = app.test_cli_runner().invoke(args=["simulate", "--token", TOKEN, "--via-infobip", "--mo", "0"])
    assert result.exit_code != 0 and "fake Infobip on this machine" in result.output
