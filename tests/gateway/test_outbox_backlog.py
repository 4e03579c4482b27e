"""A customer with a long queue of replies does not hold up the sends to everyone else.

Replies to one contact on one channel go out one at a time, so while the oldest is in flight
the others of that contact wait, and every dispatch round must look past them. Runs the
claim and the dispatcher's wait on SQLite by default and on PostgreSQL with
SWITCHBOARD_TEST_DATABASE_URL, before and after the database has statistics on the queue.
A query whose cost grew with the square of one contact's queue once took seconds there.
Speed itself belongs to the benchmarks, so this test checks what the queries return.
"""

from __future__ import annotations

from sqlalchemy import insert, select, text

from channels.types import DeliveryState, SendResult
from inbox.models import Message, OutboxItem, utcnow
from inbox.outbox import LEASE, PendingSend, claim_next, mark_sent, seconds_until_next_send
from tests.gateway.test_outbox_safety import (  # noqa: F401 (fixtures)
    _reply,
    channel,
    sender,
    twilio,
    twilio_app,
    twilio_state,
)
from tests.gateway.test_outbox_concurrency import _conversation

QUEUED_REPLIES = 15_000


def _queue_copies(state, message_id: int, count: int) -> None:
    """Insert ``count`` more queued replies like ``message_id``, to the same conversation."""
    messages = Message.__table__
    items = OutboxItem.__table__
    message_columns = [column for column in messages.columns if not column.primary_key and column.computed is None]
    item_columns = [column for column in items.columns if not column.primary_key]
    with state.engine.begin() as connection:
        message = connection.execute(select(*message_columns).where(messages.c.id == message_id)).mappings().one()
        item = connection.execute(select(*item_columns).where(items.c.message_id == message_id)).mappings().one()
        new_ids = connection.execute(
            insert(messages).returning(messages.c.id, sort_by_parameter_order=True),
            [dict(message) for _ in range(count)],
        ).scalars().all()
        connection.execute(insert(items), [{**item, "message_id": new_id} for new_id in new_ids])


def _wait_and_claim(state) -> tuple[float | None, PendingSend | None]:
    """Return what ``seconds_until_next_send`` and ``claim_next`` return."""
    with state.session_factory() as session:
        due_in = seconds_until_next_send(session, utcnow())
    with state.session_factory() as session:
        claimed = claim_next(session, lease=LEASE)
    return due_in, claimed


def test_long_queue_of_one_customer_lets_others_through(twilio_state, channel, sender):
    ada = _conversation(twilio_state, channel, "+15551230001")
    first = _reply(twilio_state, ada, sender, "Ada, your parcel left the depot.")
    _queue_copies(twilio_state, first, QUEUED_REPLIES)
    with twilio_state.session_factory() as session:
        in_flight = claim_next(session, lease=LEASE)
    ben = _conversation(twilio_state, channel, "+15551230002")
    ben_replies = [_reply(twilio_state, ben, sender, f"Ben, update {n}.") for n in range(2)]

    # Before the database has statistics on the new rows, as right after a burst of replies.
    stale = _wait_and_claim(twilio_state)
    with twilio_state.engine.begin() as connection:
        connection.execute(text("ANALYZE"))
    with twilio_state.session_factory() as session:
        mark_sent(session, stale[1].item_id, SendResult("SM" + "0" * 32, DeliveryState.QUEUED),
                  claim_token=stale[1].claim_token)
    # With statistics, as once the database analyzed the tables.
    analyzed = _wait_and_claim(twilio_state)

    assert in_flight.message_id == first
    for (due_in, claimed), ben_reply in zip((stale, analyzed), ben_replies):
        # Ben's reply is due now, and it is the one claimed, past Ada's waiting replies.
        assert due_in == 0
        assert claimed.message_id == ben_reply
