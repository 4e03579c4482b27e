"""Sends to different customers go out side by side, while one customer's replies keep their order.

A Twilio request that hangs until its timeout must not hold up the replies to other customers
on the same channel, and those must still keep the channel's pacing. The later replies to the
hung request's own customer wait, because that request may have created its message, and the
customer must read the messages in the order the agent wrote them. Runs the real outbox
dispatcher against the Twilio-compatible test server, on SQLite by default and on PostgreSQL
with SWITCHBOARD_TEST_DATABASE_URL.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select, update

from channels.types import DeliveryState, SendResult
from channels.whatsapp import parse_inbound
import gateway.workers
from gateway import create_app, get_state
from gateway.simulate import build_message_form
from gateway.workers import OutboxDispatcher
from inbox.ingest import ingest_message
from inbox.held import release_held_replies
from inbox.models import Channel, Conversation, Message, OutboxItem, utcnow
from inbox.outbox import claim_next, mark_sent
from inbox.replies import create_reply
from tests.gateway.test_outbox_safety import channel, email_conversation, sender, twilio  # noqa: F401 (fixtures)
from tests.support.smtp_server import SmtpTestServer
from tests.support.twilio_server import HANG_AFTER_CREATE
from tests.support.whatsapp import close_window

PUBLIC_URL = "https://support.example.com"
# Long enough for the other sends of the test to start well within it on a loaded machine.
TWILIO_TIMEOUT_SECONDS = 3.0
SEND_RATE = 5.0
INTERVAL_SECONDS = 1 / SEND_RATE
LONG_TEXT = " ".join(f"Step {n}: check the parcel and the label carefully." for n in range(60))


@pytest.fixture
def app(config, twilio):
    built = create_app(replace(
        config, twilio_api_base_url=twilio.base_url, public_url=PUBLIC_URL,
        whatsapp_send_rate=SEND_RATE, twilio_timeout=TWILIO_TIMEOUT_SECONDS, outbox_concurrency=4,
    ))
    yield built
    get_state(built).engine.dispose()


@pytest.fixture
def twilio_state(app):
    return get_state(app)


def _conversation(state, channel, customer: str) -> int:
    form = build_message_form(channel, customer, "Where is my parcel?", "Grace")
    raw = "&".join(f"{k}={v}" for k, v in form.items()).encode()
    with state.session_factory() as session:
        return ingest_message(session, channel.id, parse_inbound(form, raw)).conversation_id


def _reply(state, conversation_id: int, agent, text: str) -> int:
    with state.session_factory() as session:
        message = create_reply(session, conversation_id, agent.id, text)
        session.commit()
        return message.id


def _make_due(state) -> None:
    with state.session_factory() as session:
        for item in session.scalars(select(OutboxItem)):
            item.next_attempt_at = utcnow() - timedelta(seconds=1)
        for channel in session.scalars(select(Channel)):
            channel.send_not_before = None
        session.commit()


def _item(state, message_id: int) -> OutboxItem:
    with state.session_factory() as session:
        item = session.scalar(select(OutboxItem).where(OutboxItem.message_id == message_id))
        session.expunge(item)
        return item


def _provider_id(state, message_id: int) -> str | None:
    with state.session_factory() as session:
        return session.get(Message, message_id).provider_message_id


class _TimedDispatcher(OutboxDispatcher):
    """A dispatcher that notes the clock time of each claim, when each send starts, and how
    many sends run at once."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.claimed: dict[str, datetime] = {}
        self.started: dict[str, float] = {}
        self.running = 0
        self.max_running = 0
        self._lock = threading.Lock()

    def clock_claims(self, monkeypatch) -> None:
        """Note the time each claim was made at, which the channel's pacing applies to."""

        def claim(session, now, *args, **kwargs):
            pending = claim_next(session, now, *args, **kwargs)
            if pending is not None:
                self.claimed[pending.outbound.text] = now
            return pending

        monkeypatch.setattr(gateway.workers, "claim_next", claim)

    def send(self, pending):
        with self._lock:
            self.started[pending.outbound.text] = time.monotonic()
            self.running += 1
            self.max_running = max(self.max_running, self.running)
        try:
            return super().send(pending)
        finally:
            with self._lock:
                self.running -= 1


def test_hung_send_does_not_delay_other_customers(twilio_state, twilio, channel, sender, monkeypatch):
    ada = _conversation(twilio_state, channel, "+15551230001")
    first = _reply(twilio_state, ada, sender, "Ada, your parcel left the depot.")
    ben_reply = _reply(twilio_state, _conversation(twilio_state, channel, "+15551230002"), sender, "Ben, it is on its way.")
    cy_reply = _reply(twilio_state, _conversation(twilio_state, channel, "+15551230003"), sender, "Cy, we refunded you.")
    follow_up = _reply(twilio_state, ada, sender, "Ada, it arrives on Monday.")
    twilio.fault_next(HANG_AFTER_CREATE, to="whatsapp:+15551230001")
    dispatcher = _TimedDispatcher(twilio_state, threading.Event())
    dispatcher.clock_claims(monkeypatch)

    dispatcher.dispatch_due()

    # The other customers' replies went out while Ada's request hung.
    hung_at = dispatcher.started["Ada, your parcel left the depot."]
    assert dispatcher.started["Ben, it is on its way."] - hung_at < TWILIO_TIMEOUT_SECONDS / 2
    assert dispatcher.started["Cy, we refunded you."] - hung_at < TWILIO_TIMEOUT_SECONDS / 2
    # They kept the channel's pace: the n-th send of the channel is claimed n intervals after the first.
    interval = timedelta(seconds=INTERVAL_SECONDS)
    ada_claimed = dispatcher.claimed["Ada, your parcel left the depot."]
    assert dispatcher.claimed["Ben, it is on its way."] - ada_claimed >= interval
    assert dispatcher.claimed["Cy, we refunded you."] - ada_claimed >= 2 * interval
    assert _item(twilio_state, ben_reply).status == "sent"
    assert _item(twilio_state, cy_reply).status == "sent"
    # Ada's follow-up waits, because her first reply may have reached her.
    assert "Ada, it arrives on Monday." not in dispatcher.started
    assert _item(twilio_state, first).unconfirmed_since is not None
    assert _item(twilio_state, follow_up).attempts == 0

    _make_due(twilio_state)
    dispatcher.dispatch_due()

    to_ada = [request["Body"] for request in twilio.requests if request["To"] == "whatsapp:+15551230001"]
    assert to_ada == ["Ada, your parcel left the depot.", "Ada, it arrives on Monday."]
    assert twilio.list_reads == 1
    ada_sids = [created["sid"] for created in twilio.messages if created["to"] == "whatsapp:+15551230001"]
    assert [_provider_id(twilio_state, first), _provider_id(twilio_state, follow_up)] == ada_sids
    assert _item(twilio_state, follow_up).status == "sent"


def test_new_reply_goes_out_while_a_send_hangs(twilio_state, twilio, channel, sender):
    _reply(twilio_state, _conversation(twilio_state, channel, "+15551230001"), sender, "Ada, your parcel left.")
    twilio.fault_next(HANG_AFTER_CREATE, to="whatsapp:+15551230001")
    stop = threading.Event()
    thread = threading.Thread(target=OutboxDispatcher(twilio_state, stop).run)
    thread.start()
    try:
        twilio.wait_for_messages(1)
        hung_at = time.monotonic()
        ben = _conversation(twilio_state, channel, "+15551230002")
        _reply(twilio_state, ben, sender, "Ben, it is on its way.")
        twilio_state.outbox_wakeup.set()
        twilio.wait_for_messages(2, timeout=TWILIO_TIMEOUT_SECONDS)
        answered_after = time.monotonic() - hung_at
    finally:
        stop.set()
        twilio_state.outbox_wakeup.set()
        thread.join(TWILIO_TIMEOUT_SECONDS + 10)

    assert not thread.is_alive()
    assert answered_after < TWILIO_TIMEOUT_SECONDS / 2
    assert [created["body"] for created in twilio.messages] == ["Ada, your parcel left.", "Ben, it is on its way."]


def test_parts_keep_their_order_per_customer(twilio_state, twilio, channel, sender):
    customers = ("+15551230001", "+15551230002", "+15551230003")
    for customer in customers:
        _reply(twilio_state, _conversation(twilio_state, channel, customer), sender, LONG_TEXT)
    twilio.response_delay = 0.3
    # Without pacing, the parts of the three replies are all due together.
    object.__setattr__(twilio_state, "config", replace(twilio_state.config, whatsapp_send_rate=0))
    dispatcher = _TimedDispatcher(twilio_state, threading.Event())

    dispatcher.dispatch_due()

    assert dispatcher.max_running > 1
    for customer in customers:
        bodies = [request["Body"] for request in twilio.requests if request["To"] == f"whatsapp:{customer}"]
        assert len(bodies) > 1
        assert " ".join(bodies).split() == LONG_TEXT.split()


def test_hung_channel_leaves_a_slot_for_others(twilio_state, twilio, channel, sender):
    # Without pacing, nothing but the cap per channel keeps the second WhatsApp reply from
    # taking the last slot.
    object.__setattr__(
        twilio_state, "config", replace(twilio_state.config, outbox_concurrency=2, whatsapp_send_rate=0)
    )
    for customer in ("+15551230001", "+15551230002"):
        _reply(twilio_state, _conversation(twilio_state, channel, customer), sender, f"Hello {customer}.")
        twilio.fault_next(HANG_AFTER_CREATE, to=f"whatsapp:{customer}")
    with SmtpTestServer() as smtp:
        _reply(twilio_state, email_conversation(twilio_state, smtp), sender, "Sorry about the kettle.")
        dispatcher = _TimedDispatcher(twilio_state, threading.Event())

        dispatcher.dispatch_due()

        assert len(smtp.received) == 1
    # Twilio accepted the first request and never responded, so the email reply took the
    # slot that the WhatsApp channel may not fill, and did not wait for the timeout.
    hung_at = dispatcher.started["Hello +15551230001."]
    assert dispatcher.started["Sorry about the kettle."] - hung_at < TWILIO_TIMEOUT_SECONDS / 2
    assert dispatcher.started["Hello +15551230002."] - hung_at >= TWILIO_TIMEOUT_SECONDS / 2
    assert dispatcher.max_running == 2


def test_released_reply_waits_for_one_in_flight(twilio_state, channel, sender):
    ada = _conversation(twilio_state, channel, "+15551230001")
    close_window(twilio_state)
    held = _reply(twilio_state, ada, sender, "Ada, your parcel left the depot.")
    # A reply written after the window closed is held. A later one goes out once it is open.
    with twilio_state.session_factory() as session:
        session.execute(update(Conversation).values(last_inbound_at=utcnow()))
        session.commit()
    later = _reply(twilio_state, ada, sender, "Ada, it arrives on Monday.")
    with twilio_state.session_factory() as session:
        in_flight = claim_next(session)

    # The customer writes while the later reply is in flight, which releases the held one.
    with twilio_state.session_factory() as session:
        contact_id = session.get(Conversation, ada).contact_id
        released = release_held_replies(session, contact_id, channel.id, utcnow())
        session.commit()
    with twilio_state.session_factory() as session:
        during = claim_next(session)
    with twilio_state.session_factory() as session:
        mark_sent(session, in_flight.item_id, SendResult("SM" + "1" * 32, DeliveryState.QUEUED),
                  claim_token=in_flight.claim_token)
    with twilio_state.session_factory() as session:
        after = claim_next(session)

    assert _item(twilio_state, held).status == "pending"
    assert in_flight.message_id == later
    assert released == 1
    # Replies to one customer go one at a time, even when an older one becomes due again.
    assert during is None
    assert after.message_id == held
