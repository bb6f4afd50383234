"""A gunicorn worker SIGKILLed under load: only the requests it had in flight fail.

Four load clients (one request in flight each) post at once; three times, a worker process of
the gunicorn master is killed. The master starts a new one; connections not yet accepted wait
in the shared listening socket for the other worker. A request that was in flight in the killed
process gets no answer (connection reset), is not acknowledged, and is resent by its client, as
Infobip resends. Nothing acknowledged is lost, and no request is answered 500.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.faults.harness import (
    LoadClient,
    assert_no_secret_in_logs,
    assert_nothing_lost,
    children_of,
    report_figures,
    wait_for,
)

pytestmark = pytest.mark.faults

CLIENTS = 4
KILLS = 3


def test_gunicorn_worker_sigkilled_only_in_flight_requests_fail(stack, load, consumer):
    clients: list[LoadClient] = [load(rate=8, size=20, mo_every=5) for _ in range(CLIENTS)]
    wait_for(lambda: all(len(c.acked) >= 100 for c in clients), 30, "the load to be acknowledged")
    master = stack.procs["web"].pid
    killed: list[int] = []
    for _ in range(KILLS):
        workers = children_of(master)
        assert len(workers) == 2, workers  # WEB_CONCURRENCY=2
        victim = workers[0]
        assert stack.procs["web"].alive()  # the master: ours, and these are its children
        os.kill(victim, signal.SIGKILL)
        killed.append(victim)
        wait_for(lambda v=victim: v not in children_of(master) and len(children_of(master)) == 2, 60,
                 "gunicorn to replace the killed worker")
        time.sleep(3)
    for client in clients:
        client.finish(120)

    figures = {"clients": CLIENTS, "gunicornWorkersKilled": len(killed)}
    for n, client in enumerate(clients):
        part = assert_nothing_lost(stack, client, consumer)
        failed_first_tries = sum(v for k, v in client.first_try.items() if k != 200)
        # One request in flight per client: at most one failure per kill, per client.
        assert failed_first_tries <= KILLS, client.first_try
        assert 500 not in client.statuses
        figures[f"client{n}"] = {**part, "failedFirstTries": failed_first_tries}
    figures["acknowledged"] = sum(figures[f"client{n}"]["acknowledged"] for n in range(CLIENTS))
    figures["lost"] = sum(figures[f"client{n}"]["lost"] for n in range(CLIENTS))
    figures["failedRequests"] = sum(figures[f"client{n}"]["failedFirstTries"] for n in range(CLIENTS))
    report_figures("gunicorn_worker_sigkill", figures)
    assert_no_secret_in_logs(stack)
