"""What an admin reads when a mail server cannot be reached: plain words and what to check,
from real sockets on loopback (a closed port, a server that greets in plain text)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from channels.email.imap import ImapReader, ImapSettings, MailboxError
from channels.email.smtp import SmtpSettings, send_email
from channels.errors import TransientSendError, describe_network_error
from channels.types import Address, AddressKind, OutboundMessage


@pytest.fixture
def closed_port() -> int:
    """A loopback port that nothing listens on."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        return listener.getsockname()[1]


@pytest.fixture
def plain_server() -> Iterator[int]:
    """A loopback server that greets every connection in plain text, as an IMAP or SMTP port
    without implicit TLS does. Yields its port."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()

    def serve() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return  # the listener was closed
            with connection:
                connection.sendall(b"* OK plain text greeting\r\n")
                connection.settimeout(2)
                try:
                    connection.recv(4096)
                except OSError:
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    listener.close()
    thread.join(5)


def _imap_error(port: int, use_ssl: bool) -> str:
    settings = ImapSettings(host="127.0.0.1", port=port, username="support", password="x", use_ssl=use_ssl)
    with pytest.raises(MailboxError) as raised:
        ImapReader(settings, timeout=5).connect()
    return str(raised.value)


def _smtp_error(port: int, security: str) -> str:
    settings = SmtpSettings(host="127.0.0.1", port=port, security=security, from_address="support@shop.example")
    message = OutboundMessage(
        to=Address(AddressKind.EMAIL, "maria@example.org"), text="Hello", subject="Hi", message_id="a@shop.example",
    )
    with pytest.raises(TransientSendError) as raised:
        send_email(settings, message)
    return str(raised.value)


def test_imap_refused_port_names_the_checks(closed_port):
    error = _imap_error(closed_port, use_ssl=False)

    assert f"127.0.0.1:{closed_port}" in error
    assert "the connection was refused; check the host and port" in error
    assert "Errno" not in error


def test_imap_tls_to_plain_port_names_the_setting(plain_server):
    error = _imap_error(plain_server, use_ssl=True)

    assert "did not answer in TLS; check that the port and the TLS setting belong together" in error
    assert "_ssl.c" not in error


def test_smtp_refused_port_names_the_checks(closed_port):
    error = _smtp_error(closed_port, "none")

    assert error.startswith(f"SMTP connection to 127.0.0.1:{closed_port} failed: the connection was refused")


def test_smtp_tls_to_plain_port_names_the_setting(plain_server):
    assert "did not answer in TLS" in _smtp_error(plain_server, "ssl")


@pytest.mark.parametrize(("error", "expected"), [
    (socket.gaierror(-2, "Name or service not known"), "the host name could not be resolved"),
    (TimeoutError("timed out"), "the connection timed out"),
    (ConnectionResetError(104, "Connection reset by peer"), "the server closed the connection"),
    (OSError(113, "No route to host"), "the host cannot be reached from this machine"),
    (OSError(5, "Input/output error"), "[Errno 5] Input/output error"),
])
def test_other_network_errors_in_plain_words(error, expected):
    assert describe_network_error(error).startswith(expected)
