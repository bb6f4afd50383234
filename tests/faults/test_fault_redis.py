"""redis-server SIGKILLed under load and restarted on the same port and data dir (AOF, fsync always).

While it is down, ingest answers 503 with Retry-After (never a 500), so Infobip keeps the reports
and resends them; the load client does the same. After the restart every report that was
answered 200 is in Redis (the AOF had it before the answer), gets applied and delivered once.

SIGKILL of the process loses nothing even with `appendfsync everysec`: written data sits in the
OS page cache. What `always` buys is surviving a crash of the host (power, kernel), which a test
on one machine cannot cause; docs/RELIABILITY.md says what everysec can lose then.
"""

from __future__ import annotations

import time

import pytest

from tests.faults.harness import assert_no_secret_in_logs, assert_nothing_lost, report_figures, wait_for

pytestmark = pytest.mark.faults

DOWN_FOR = 6.0  # seconds Redis stays down, under load


def test_redis_sigkilled_and_restarted_loses_nothing_acknowledged(stack, load, consumer):
    client = load(rate=10, size=20, mo_every=5)
    wait_for(lambda: len(client.acked) >= 200, 30, "the load to be acknowledged")
    acked_before = len(client.acked)
    refused_before = client.count(503)

    stack.redis_server.process.kill()  # SIGKILL: no shutdown, no final AOF rewrite
    stack.redis_server.process.wait(10)
    killed_at = time.monotonic()
    wait_for(lambda: client.count(503) > refused_before, 30, "ingest to answer 503 while Redis is down")
    first_503 = round(time.monotonic() - killed_at, 1)
    time.sleep(DOWN_FOR)

    stack.redis_server.start()  # same port, same data dir: the AOF is replayed
    restarted_at = time.monotonic()
    acked_when_back = len(client.acked)
    wait_for(lambda: len(client.acked) > acked_when_back, 60, "ingest to answer 200 again")
    first_200 = round(time.monotonic() - restarted_at, 1)
    wait_for(lambda: stack.live_workers() >= 3, 90, "the workers to be back")
    time.sleep(5)  # steady load on the restarted Redis too

    client.finish(120)
    figures = assert_nothing_lost(stack, client, consumer)
    refused = client.count(503) - refused_before
    assert refused > 0 and client.retry_after, "503 answers with Retry-After while Redis was down"
    assert all(value and value.isdigit() for value in client.retry_after)
    figures.update({
        "acknowledgedBeforeKill": acked_before,
        "secondsDown": round(restarted_at - killed_at, 1),
        "answers503WhileDown": refused,
        "retryAfterValues": dict(client.retry_after),
        "secondsFromKillToFirst503": first_503,
        "secondsFromRestartToFirst200": first_200,
    })
    report_figures("redis_sigkill", figures)
    assert_no_secret_in_logs(stack)
