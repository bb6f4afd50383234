"""Opt-outs and keyword replies (SPEC §11): the web side.

Regulators and carriers require that a number which wrote STOP gets no more marketing SMS and
that STOP, START and HELP are answered. The pieces, by where they run:

- `section` is the routes file's `optout` section (keywords, reply texts, the cap) and the
  check of `reply:` texts on MO routes; `app/routes.py` reads the file and calls it.
- `workers/optout.py`, in the drain job's transaction that stores an MO: applies STOP/START to
  the list, emits `contact.optout`/`contact.optin`, and records the reply, with the messageId
  chosen for it, before anything is sent.
- `workers/replies.py` sends recorded replies through Infobip, at most once each.
- Here: `lists` reads the list and hands manual changes over like any other input (the drain
  job applies them, so a change and its event are one transaction); `replies` reads replies
  for the inbound views; `api` is `/api/optouts`.
"""
