"""Large IMAP batches are parsed in a worker process while the reader stores the batch before."""

from __future__ import annotations

import os
import signal
from email.message import EmailMessage

import pytest
from sqlalchemy import select

from channels.email.imap import FetchedMail
from gateway.workers import MailboxReader
from inbox.models import Message, PayloadStatus, RawPayload
from tests.gateway.conftest import SUPPORT, import_mailbox

UNPARSEABLE = b"Subject: a mail without any sender\r\n\r\nNobody could be answered.\r\n"


def _raw(number: int) -> bytes:
    message = EmailMessage()
    message["From"] = f"customer{number}@customer.example"
    message["To"] = SUPPORT
    message["Subject"] = f"Question {number}"
    message["Message-ID"] = f"<parsed-{number}@customer.example>"
    message.set_content(f"Body of question {number}.\n")
    return message.as_bytes()


def _batch(raws: list[bytes]) -> list[FetchedMail]:
    return [FetchedMail(uid, 1, raw, len(raw), False) for uid, raw in enumerate(raws, start=1)]


def _ready_parser(batch: list[FetchedMail]) -> None:
    """Start the shared parser process, if needed, and wait until it takes work."""
    MailboxReader._start_parsing(batch)
    assert MailboxReader._parser_started is not None
    MailboxReader._parser_started.result(timeout=120)


def test_small_batch_is_parsed_in_the_reader():
    assert MailboxReader._start_parsing(_batch([_raw(1)])) is None


def test_large_batch_is_parsed_in_the_worker_process():
    batch = _batch([_raw(number) for number in range(MailboxReader.PARSE_IN_WORKER_FROM)] + [UNPARSEABLE])
    _ready_parser(batch)

    parsing = MailboxReader._start_parsing(batch)
    assert parsing is not None
    parsed = MailboxReader._parsed(batch, parsing)

    assert [inbound.provider_message_id for inbound in parsed[:-1]] == [
        f"parsed-{number}@customer.example" for number in range(MailboxReader.PARSE_IN_WORKER_FROM)
    ]
    assert isinstance(parsed[-1], str)
    assert "From" in parsed[-1]


@pytest.mark.dovecot
def test_import_through_the_worker_process_keeps_unparseable_mail(state, mailbox, email_channel):
    raws = [_raw(number) for number in range(12)]
    raws.insert(5, UNPARSEABLE)
    for raw in raws:
        mailbox.append(raw)
    _ready_parser(_batch(raws))

    assert import_mailbox(state, email_channel) == 12
    with state.session_factory() as session:
        stored = session.scalars(select(Message.provider_message_id).order_by(Message.id)).all()
        failed = session.scalars(select(RawPayload.body).where(RawPayload.status == PayloadStatus.FAILED.value)).all()
    assert stored == [f"parsed-{number}@customer.example" for number in range(12)]
    assert failed == [UNPARSEABLE]


def test_killed_parser_process_falls_back_to_the_reader():
    batch = _batch([_raw(number) for number in range(MailboxReader.PARSE_IN_WORKER_FROM)])
    _ready_parser(batch)
    assert MailboxReader._parser is not None
    os.kill(MailboxReader._parser.pid, signal.SIGKILL)

    # Whether the pool already knows that its process died or not, the batch is parsed.
    parsed = MailboxReader._parsed(batch, MailboxReader._start_parsing(batch))
    assert [inbound.provider_message_id for inbound in parsed] == [
        f"parsed-{number}@customer.example" for number in range(MailboxReader.PARSE_IN_WORKER_FROM)
    ]

    # The next large batch starts a new process, which parses again.
    _ready_parser(batch)
    parsing = MailboxReader._start_parsing(batch)
    assert parsing is not None
    assert len(MailboxReader._parsed(batch, parsing)) == len(batch)
