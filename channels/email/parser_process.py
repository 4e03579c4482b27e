"""A child process that parses batches of raw mail with ``parse_emails``.

A mail reader hands large fetch batches to this process, so that parsing one batch overlaps
with storing the batch before it. The child runs this module with ``python -m`` and imports
only the parser. A ``multiprocessing`` child would first import the parent's main module,
which for the service is the whole app, and the reader would parse every batch itself
during the second or more that this takes.

Requests and replies travel over the child's standard input and output. Each is a 4-byte
big-endian length followed by a pickle: a list of raw mails in, the list that
``parse_emails`` returns out, in the order of the requests. The child exits at the end of
its input, so it also ends when the parent dies.
"""

from __future__ import annotations

import collections
import logging
import os
import pickle
import queue
import struct
import subprocess
import sys
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import IO, Any

from channels.email.parse import parse_emails
from channels.types import InboundMessage

logger = logging.getLogger(__name__)

_LENGTH = struct.Struct(">I")
# The folder that contains the ``channels`` package, so that the child finds it without an install.
_SOURCE_ROOT = str(Path(__file__).resolve().parents[2])


class ParserStopped(Exception):
    """The parser process exited or could not be reached, so a batch was not parsed."""


class ParserProcess:
    """A running parser child. ``submit`` queues a batch and returns a future of its parse.

    Futures complete in the order of submission. When the child dies, every future still
    open fails with ``ParserStopped``, and so does each later ``submit``. Raises ``OSError``
    when the child cannot be started.
    """

    def __init__(self) -> None:
        environment = dict(os.environ)
        paths = [_SOURCE_ROOT, environment.get("PYTHONPATH", "")]
        environment["PYTHONPATH"] = os.pathsep.join(path for path in paths if path)
        self._process = subprocess.Popen(
            [sys.executable, "-m", __name__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=environment,
        )
        self._lock = threading.Lock()
        self._pending: collections.deque[Future[list[InboundMessage | str]]] = collections.deque()
        self._requests: queue.SimpleQueue[list[bytes] | None] = queue.SimpleQueue()
        self._stopped = False
        # Writing and reading run in two threads of their own, so the child can already have
        # the next batch when it finishes one. ``submit`` only puts the batch on an unbounded
        # queue, so a full pipe does not block it.
        threading.Thread(target=self._send, name="mail-parser-send", daemon=True).start()
        threading.Thread(target=self._receive, name="mail-parser-receive", daemon=True).start()

    @property
    def pid(self) -> int:
        return self._process.pid

    def submit(self, raws: list[bytes]) -> Future[list[InboundMessage | str]]:
        """Queue ``raws`` for parsing. Raises ``ParserStopped`` when the child has exited."""
        future: Future[list[InboundMessage | str]] = Future()
        with self._lock:
            if self._stopped:
                raise ParserStopped("the mail parser process has exited")
            self._pending.append(future)
            self._requests.put(raws)
        return future

    def close(self) -> None:
        """Stop the child. Futures still open fail with ``ParserStopped``."""
        self._requests.put(None)
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait()
        self._fail("the mail parser process was closed")

    def _send(self) -> None:
        stream = self._process.stdin
        assert stream is not None
        try:
            while (raws := self._requests.get()) is not None:
                write_frame(stream, raws)
        except (OSError, ValueError) as error:  # a broken pipe, or a stream closed by close()
            self._fail(f"sending a batch to the mail parser process failed: {error}")
        finally:
            try:
                stream.close()
            except OSError:
                pass  # the child is gone, so its end of the pipe is closed already

    def _receive(self) -> None:
        stream = self._process.stdout
        assert stream is not None
        try:
            while (reply := read_frame(stream)) is not None:
                with self._lock:
                    future = self._pending.popleft()
                future.set_result(reply)
        except (OSError, ValueError, EOFError, pickle.UnpicklingError) as error:
            self._fail(f"reading from the mail parser process failed: {error}")
            return
        self._fail(f"the mail parser process exited with status {self._process.wait()}")

    def _fail(self, reason: str) -> None:
        with self._lock:
            self._stopped = True
            failed = list(self._pending)
            self._pending.clear()
        for future in failed:
            future.set_exception(ParserStopped(reason))
        if failed:
            logger.warning("%s: %s batches go back to the reader", reason, len(failed))


def write_frame(stream: IO[bytes], value: Any) -> None:
    """Write ``value`` as a 4-byte length and a pickle, and flush."""
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_LENGTH.pack(len(data)))
    stream.write(data)
    stream.flush()


def read_frame(stream: IO[bytes]) -> Any:
    """Read one value that ``write_frame`` wrote. Returns None at the end of the stream.

    Raises ``EOFError`` when the stream ends inside a frame.
    """
    header = _read_exactly(stream, _LENGTH.size)
    if header is None:
        return None
    data = _read_exactly(stream, _LENGTH.unpack(header)[0])
    if data is None:
        raise EOFError("the stream ended inside a frame")
    return pickle.loads(data)


def _read_exactly(stream: IO[bytes], size: int) -> bytes | None:
    data = stream.read(size)
    if not data:
        return None
    if len(data) < size:
        raise EOFError(f"the stream ended after {len(data)} of {size} bytes")
    return data


def main() -> None:
    """Parse the batches that arrive on standard input until it ends."""
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    # Anything else printed goes to standard error, so it cannot corrupt a reply.
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    requests = sys.stdin.buffer
    while (raws := read_frame(requests)) is not None:
        write_frame(replies, parse_emails(raws))


if __name__ == "__main__":
    main()
