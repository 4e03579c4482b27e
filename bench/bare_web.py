"""``switchboard web`` with the benchmark's bare reference endpoint added.

The webhook benchmark compares each webhook figure with a bare Flask POST endpoint served
by the same process. The product has no such endpoint, so this module adds it to the app
that ``switchboard web`` builds and then runs that command unchanged: the same HTTP server
(``gateway.server``), options and configuration from ``SWITCHBOARD_*`` variables.

    .venv/bin/python -m bench.bare_web web --port 5001
"""

from __future__ import annotations

import sys

from flask import Flask, request

import gateway
import gateway.auth

BARE_ENDPOINT = "bench_bare"
BARE_PATH = "/bench/bare"


def add_bare_endpoint(app: Flask) -> None:
    """Add a POST endpoint that only reads the form, outside the login guard."""

    def bare() -> tuple[str, int]:
        request.form.get("MessageSid")
        return "", 200

    app.add_url_rule(BARE_PATH, BARE_ENDPOINT, bare, methods=["POST"])
    # The guard lets public endpoints through; the bench's own endpoint is one.
    gateway.auth.PUBLIC_ENDPOINTS = gateway.auth.PUBLIC_ENDPOINTS | {BARE_ENDPOINT}


def main(argv: list[str]) -> int:
    from gateway import cli

    build = gateway.create_app

    def create_app_with_bare(*args, **kwargs) -> Flask:
        app = build(*args, **kwargs)
        add_bare_endpoint(app)
        return app

    # The command imports create_app from the package when it runs, so it gets this one.
    gateway.create_app = create_app_with_bare
    return cli.main(argv, prog_name="switchboard", standalone_mode=True) or 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
