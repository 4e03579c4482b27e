"""Switchboard processes started through the ``switchboard`` console script, and Socket.IO clients.

``ServiceProcess`` runs one ``switchboard web`` or ``switchboard worker`` with its own
environment, writes its output to a file (a pipe without a reader could fill up and stall it),
and stops it with SIGTERM, then SIGKILL. ``EventClient`` is a python-socketio client that
keeps every event it receives, so a test can wait for one that matches.
"""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
import requests
import socketio

# The console script that pip installed beside the interpreter running the tests.
SWITCHBOARD = str(Path(sys.executable).with_name("switchboard"))
START_TIMEOUT = 30.0
# A deployment's service manager waits this long or longer before it kills a process.
STOP_TIMEOUT = 10.0


def free_port() -> int:
    """Return a loopback port that is free now, below the kernel's range of ephemeral ports.

    A port that ``bind(0)`` picks comes from that range, so a client connection of another
    test could take it as its local port before the service listens on it, and keep-alive
    connections last long enough to make that happen.
    """
    low = _ephemeral_port_low()
    for port in random.sample(range(max(1024, low - 10000), low), 200):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port below {low} on 127.0.0.1")


def _ephemeral_port_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def redis_reachable(url: str) -> bool:
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except redis.RedisError:
        return False


class ServiceProcess:
    """One Switchboard process: ``args`` after the script name, ``env`` its whole environment."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.args = args
        self.env = env
        self.log_path = log_dir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ServiceProcess:
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [SWITCHBOARD, *self.args], env=self.env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        return self

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def fail_unless_running(self) -> None:
        if not self.running():
            pytest.fail(f"switchboard {self.name} exited:\n{self.output()}", pytrace=False)

    def wait_until_serving(self, base_url: str) -> None:
        """Wait until ``/healthz`` returns 200, or fail with the process's output."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            self.fail_unless_running()
            try:
                if requests.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        pytest.fail(f"switchboard {self.name} did not answer within {START_TIMEOUT} s:\n{self.output()}", pytrace=False)

    def wait_for_output(self, text: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while text not in self.output():
            self.fail_unless_running()
            if time.monotonic() > deadline:
                pytest.fail(f"switchboard {self.name} did not print {text!r}:\n{self.output()}", pytrace=False)
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(STOP_TIMEOUT)
            # A warning in the summary, not a failure: the tests of stopping (an idle reader,
            # a long import) check their own cases, and a slow exit here is a lead to follow.
            warnings.warn(f"switchboard {self.name} did not exit within {STOP_TIMEOUT} s of SIGTERM "
                          f"and was killed:\n{self.output()[-2000:]}", stacklevel=2)


def service_environment(**settings: str | None) -> dict[str, str]:
    """Return this process's environment without ``SWITCHBOARD_*`` variables, plus ``settings``.

    ``settings`` are config names in lower case (``database_url``), set as SWITCHBOARD_ variables.
    """
    env = {key: value for key, value in os.environ.items() if not key.startswith("SWITCHBOARD_")}
    env.update({f"SWITCHBOARD_{key.upper()}": value for key, value in settings.items() if value is not None})
    return env


class EventClient:
    """A Socket.IO client of one web process that records the events named in ``names``."""

    def __init__(self, base_url: str, token: str, names: Iterable[str]) -> None:
        self.base_url = base_url
        self.token = token
        self.client = socketio.Client(reconnection=False)
        self.events: list[dict[str, Any]] = []
        self._condition = threading.Condition()
        for name in names:
            self.client.on(name, self._recorder(name))

    def _recorder(self, name: str) -> Callable[[Any], None]:
        def record(payload: Any) -> None:
            with self._condition:
                self.events.append({"name": name, "payload": payload})
                self._condition.notify_all()

        return record

    def connect(self) -> EventClient:
        self.client.connect(self.base_url, auth={"token": self.token}, transports=["websocket"], wait_timeout=10)
        return self

    def disconnect(self) -> None:
        if self.client.connected:
            self.client.disconnect()

    def wait_for(self, name: str, matches: Callable[[dict[str, Any]], bool], timeout: float = 20.0) -> dict[str, Any]:
        """Return the first ``name`` event whose payload ``matches``, waiting up to ``timeout`` s."""
        deadline = time.monotonic() + timeout
        with self._condition:
            while True:
                for event in self.events:
                    if event["name"] == name and matches(event["payload"]):
                        return event["payload"]
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = [(event["name"], event["payload"].get("event_id")) for event in self.events]
                    raise AssertionError(f"no matching {name} event from {self.base_url} in {timeout} s; got {seen}")
                self._condition.wait(remaining)
