"""Every way a request can fail, as named exceptions.

The web tier raises these; one Flask error handler (`app.http_errors`) turns each into its JSON
answer. Keep the list short and flat, as rq's own `exceptions.py`: a new failure mode is a new
class here, with its HTTP status, and nothing else.
"""

from __future__ import annotations

from typing import Any


class ReceiverError(Exception):
    """Base class. `status` is the HTTP answer; `details` goes into the JSON body."""

    status = 500
    error = "internal_error"

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class ConfigError(ReceiverError):
    """The service cannot start with this configuration."""


class Unauthorized(ReceiverError):
    status = 401
    error = "unauthorized"


class Forbidden(ReceiverError):
    status = 403
    error = "forbidden"


class NotFound(ReceiverError):
    status = 404
    error = "not_found"


class InvalidPayload(ReceiverError):
    """Nothing in the body could be accepted; `details` says why, per item or field."""

    status = 400
    error = "invalid_payload"


class RequestTimeout(ReceiverError):
    """The body did not arrive in time (deploy/gunicorn.conf.py, BODY_TIMEOUT): a slow-drip
    client. The connection is closed with the answer."""

    status = 408
    error = "request_timeout"


class UriTooLong(ReceiverError):
    """The request's URL is over MAX_URL_BYTES; what was read of it is quarantined."""

    status = 414
    error = "uri_too_long"


class UnsupportedMediaType(ReceiverError):
    status = 415
    error = "unsupported_media_type"


class StoreUnavailable(ReceiverError):
    """Redis could not take the write. Infobip retries on 5xx, so nothing is lost."""

    status = 503
    error = "store_unavailable"
    retry_after = 30


class NotReplicated(StoreUnavailable):
    """Redis took the write, but fewer replicas than REDIS_MIN_REPLICAS confirmed it within
    REDIS_WAIT_MS (SPEC §12): a failover now could lose it, so it is not acknowledged. Infobip
    resends; the resent report is applied once."""

    error = "not_replicated"
    retry_after = 5
