"""Per-channel send pacing: each claimed slot moves the next one on by exactly one interval."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from inbox.models import Channel
from inbox.outbox import _take_send_slot

INTERVAL = timedelta(seconds=1)
START = datetime(2026, 12, 5, 9, 0, tzinfo=timezone.utc)


def _slot(state, channel_id: int) -> datetime | None:
    with state.session_factory() as session:
        return session.get(Channel, channel_id).send_not_before


def _take(state, channel_id: int, now: datetime) -> bool:
    with state.session_factory() as session, session.begin():
        return _take_send_slot(session, channel_id, now, INTERVAL)


def test_first_slot_counts_from_now(state, whatsapp_channel):
    assert _take(state, whatsapp_channel.id, START)
    assert _slot(state, whatsapp_channel.id) == START + INTERVAL


def test_slot_ahead_is_not_taken(state, whatsapp_channel):
    assert _take(state, whatsapp_channel.id, START)

    assert not _take(state, whatsapp_channel.id, START + INTERVAL / 2)
    assert _slot(state, whatsapp_channel.id) == START + INTERVAL


def test_late_claim_does_not_stretch_the_interval(state, whatsapp_channel):
    assert _take(state, whatsapp_channel.id, START)

    # The dispatcher wakes 300 ms after the slot; the next slot still follows the last one.
    assert _take(state, whatsapp_channel.id, START + INTERVAL + timedelta(milliseconds=300))
    assert _slot(state, whatsapp_channel.id) == START + 2 * INTERVAL


def test_slot_after_idle_spell_counts_from_now(state, whatsapp_channel):
    assert _take(state, whatsapp_channel.id, START)
    later = START + timedelta(minutes=5)

    assert _take(state, whatsapp_channel.id, later)
    assert _slot(state, whatsapp_channel.id) == later + INTERVAL
