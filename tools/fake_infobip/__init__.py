"""A fake Infobip SMS API for tests and demos: `python -m tools.fake_infobip --port 9090`.

A real local HTTP server that behaves as the seed says Infobip does, so a client that works
against it has met Infobip's real rules: reports and inbound messages are served once,
`limit` pages them, logs are repeatable for 48 hours, sends are answered as Infobip answers
them and later produce reports pushed to the message's `notifyUrl` (retried on Infobip's cycle)
or kept for pulling; both auth schemes are enforced; 429/5xx, hung and dropped requests come on
demand. `server.py` is the HTTP side, `model.py` the data, `timeline.py` reports and pushes,
`control_api.py` the `/_fake/` API and `control.py` its Python client (README, "The fake
Infobip").
"""
