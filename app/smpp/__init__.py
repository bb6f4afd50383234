"""The SMPP adapter (SPEC §13): Infobip's receiver binds feeding the same hand-off as HTTP.

- `codec`: smpplib, plus Infobip's vendor TLVs; a parsed deliver_sm as plain fields.
- `pdu_map`: pure mapping, deliver_sm -> a report, an inbound SMS or a number check.
- `session`: one bound session; acknowledges only after `app.handoff.accept` returned.
- `status`: each bind's state in Redis, for /readyz, /metrics and the dashboard.
- `__main__`: the `smpp` process (sessions, backoff, failover, SIGTERM).
"""
