"""`python -m tools.fake_infobip --port 9090 [--api-key K] [--username U --password P]
[--notify-delay S] [--retry-scale X]`

Prints one line, `fake Infobip listening on http://127.0.0.1:<port>`, once it accepts
connections (with `--port 0` the port is chosen by the system: read it from that line).
Without credentials it uses the demo ones it prints.
"""

from __future__ import annotations

import argparse
import logging
import sys

from werkzeug.serving import make_server

from tools.fake_infobip.server import Fake, create_app

DEMO_KEY, DEMO_USER, DEMO_PASSWORD = "fake-api-key", "fake", "fake-password"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tools.fake_infobip", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9090)
    parser.add_argument("--api-key", help="accept 'Authorization: App <key>'")
    parser.add_argument("--username", help="accept HTTP Basic with --password")
    parser.add_argument("--password")
    parser.add_argument("--notify-delay", type=float, default=1.0, help="seconds from a send to its report")
    parser.add_argument("--retry-scale", type=float, default=1 / 60,
                        help="factor on Infobip's push retry cycle (1 min + 1 min x n^2); 1 = real time")
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    if not (args.api_key or args.username):
        args.api_key, args.username, args.password = DEMO_KEY, DEMO_USER, DEMO_PASSWORD
        print(f"demo credentials: INFOBIP_API_KEY={DEMO_KEY} or INFOBIP_USERNAME={DEMO_USER} "
              f"INFOBIP_PASSWORD={DEMO_PASSWORD}", flush=True)
    if bool(args.username) != bool(args.password):
        parser.error("give both --username and --password")
    if not args.verbose:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
    fake = Fake(args.api_key, args.username, args.password, args.notify_delay, args.retry_scale)
    server = make_server(args.host, args.port, create_app(fake), threaded=True)
    print(f"fake Infobip listening on http://{args.host}:{server.server_port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
