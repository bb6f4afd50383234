"""Talking to Infobip (SPEC §9): `client.py` is the one way calls go out, `status.py` each
feature's health as `/readyz` and `/metrics` show it."""
