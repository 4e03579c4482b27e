"""Run proactive sweeps in a process of its own, as a second scheduler host would.

Usage: python -m tests.support.sweep_process DATABASE_URL NOW_ISO ROUNDS INSTANCE_DIR

Prints one JSON line: how many occurrences this process queued over all rounds.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime

from gateway import create_app, get_state
from gateway.config import Config
from inbox.proactive.sending import sweep
from tests.support.proactive import settings


def main() -> None:
    url, now_text, rounds, instance = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    state = get_state(create_app(Config(database_url=url, secret_key="test-secret-key", instance_dir=instance)))
    now = datetime.fromisoformat(now_text)
    queued = 0
    for _ in range(rounds):
        queued += sweep(state.session_factory, settings(), now).results.get("queued", 0)
    state.engine.dispose()
    print(json.dumps({"queued": queued}))


if __name__ == "__main__":
    main()
