"""The lock a job holds while it talks to Infobip (one poller per feed, one reconciliation run),
made so that a holder killed mid-run blocks nobody for long.

It expires `ttl` seconds after it was taken or last renewed, and the holder renews it before
every call, so `ttl` only has to outlast one call, not a whole run: a SIGKILLed (or SIGTERMed)
worker, whose `finally` never runs, holds it at most `ttl` more seconds. Renewing and releasing
check a token, so a holder that outlived its lease (a very slow call) never extends or deletes
the next holder's.
"""

from __future__ import annotations

import contextlib
import uuid

from redis import Redis, RedisError

_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"
_RENEW = ("if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('EXPIRE', KEYS[1], ARGV[2]) end "
          "return 0")


class Lease:
    def __init__(self, r: Redis, key: str, ttl: int) -> None:
        self.r, self.key, self.ttl = r, key, ttl
        self.token = uuid.uuid4().hex

    def take(self) -> bool:
        """Whether we have it now (False: another holder has it)."""
        return bool(self.r.set(self.key, self.token, nx=True, ex=self.ttl))

    def renew(self) -> bool:
        """Another `ttl` seconds; False when it lapsed meanwhile (then stop: the next holder goes on)."""
        return bool(self.r.eval(_RENEW, 1, self.key, self.token, self.ttl))

    def release(self) -> None:
        with contextlib.suppress(RedisError):  # else it expires on its own
            self.r.eval(_RELEASE, 1, self.key, self.token)
