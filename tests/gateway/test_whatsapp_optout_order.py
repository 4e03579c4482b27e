"""STOP and START through signed Meta webhooks, stored in another order than the customer sent them.

Meta puts several messages into one webhook and sends a webhook again after an error, so a
STOP can be stored after the START that the customer sent later. The messages' own
timestamps decide.
"""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from inbox.models import Contact, Message
from tests.gateway.test_meta_webhooks import (  # noqa: F401 (client and meta_channel are fixtures)
    CUSTOMER,
    _post,
    client,
    meta_channel,
)
from tests.support.meta_server import change, contact, entry, text_message, webhook_body


def _text(text: str, sent: int) -> dict:
    message = text_message(CUSTOMER, text)
    message["timestamp"] = str(sent)
    return message


def _webhook(*messages: dict) -> dict:
    return webhook_body(entry(change(messages=list(messages), contacts=[contact(CUSTOMER, "Grace")])))


def _opted_out(state) -> tuple[object, object]:
    with state.session_factory() as session:
        row = session.execute(select(Contact.opted_out_at, Contact.opted_out_keyword)).one()
        return row.opted_out_at, row.opted_out_keyword


def test_batched_stop_before_later_start_opts_in(client, state, meta_channel):
    sent = int(time.time()) - 60

    response = _post(client, meta_channel.id, _webhook(_text("START", sent + 20), _text("STOP", sent + 10)))

    assert response.status_code == 200
    with state.session_factory() as session:
        assert list(session.scalars(select(Message.text).order_by(Message.id))) == ["START", "STOP"]
    assert _opted_out(state) == (None, None)


def test_retried_start_before_later_stop_keeps_opt_out(client, state, meta_channel):
    sent = int(time.time()) - 600

    _post(client, meta_channel.id, _webhook(_text("Where is my parcel?", sent)))
    _post(client, meta_channel.id, _webhook(_text("STOP", sent + 300)))
    _post(client, meta_channel.id, _webhook(_text("START", sent + 100)))

    opted_out_at, keyword = _opted_out(state)
    assert keyword == "STOP"
    assert int(opted_out_at.timestamp()) == sent + 300
