"""The lease of app/infobip/lease.py: one holder at a time, only the holder renews or releases
it, and it lapses on its own (a holder killed before its `finally`)."""

from __future__ import annotations

import time

from app.infobip.lease import Lease


def test_one_holder_and_only_the_holder_renews_or_releases(r) -> None:
    first, second = Lease(r, "lock:test", 30), Lease(r, "lock:test", 30)
    assert first.take() and not second.take()
    assert not second.renew()
    second.release()
    assert r.get("lock:test") == first.token.encode(), "another holder's release leaves it alone"
    r.expire("lock:test", 5)
    assert first.renew() and r.ttl("lock:test") > 5
    first.release()
    assert second.take()


def test_a_lease_nobody_renews_lapses(r) -> None:
    held = Lease(r, "lock:test", 1)
    assert held.take()
    r.pexpire("lock:test", 1)  # as if its second had passed
    time.sleep(0.05)
    assert not held.renew(), "lapsed: the holder stops"
    assert Lease(r, "lock:test", 30).take()
