"""A sample downstream consumer for trying the service: prints every event it receives.

    .venv/bin/python -m tools.sample_consumer            # listens on 127.0.0.1:9000/events

It checks each delivery's Standard Webhooks signature with the `standardwebhooks` package
(the secret of deploy/routes.demo.yml by default), answers 2xx, and prints one line per event;
a resent event (same webhook-id) is printed as a duplicate and acknowledged again, which is
what a real consumer should do too.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

DEMO_SECRET = "whsec_ZGVtby1jb25zdW1lci1zZWNyZXQtMDEyMzQ1Njc4OQ=="  # deploy/routes.demo.yml


def handler(secret: str) -> type[BaseHTTPRequestHandler]:
    seen: set[str] = set()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_args: object) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            try:
                event = Webhook(secret).verify(body, dict(self.headers))
            except WebhookVerificationError as err:
                print(f"REJECTED (bad signature: {err})", flush=True)
                self._answer(400)
                return
            data = event["data"]
            status = (data.get("status") or {}).get("name") or data.get("text") or ""
            again = " (duplicate, already seen)" if event["id"] in seen else ""
            seen.add(event["id"])
            print(f"{event['type']:<17} {data.get('messageId')}  {status}{again}", flush=True)
            self._answer(204)

        def _answer(self, status: int) -> None:
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--secret", default=DEMO_SECRET)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), handler(args.secret))
    print(json.dumps({"listening": f"http://127.0.0.1:{args.port}/events"}), flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


if __name__ == "__main__":
    main()
