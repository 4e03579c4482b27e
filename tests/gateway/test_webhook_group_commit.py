"""Group commit of webhook payloads: many requests per transaction, each with its own outcome."""

from __future__ import annotations

import threading
import time
from urllib.parse import urlencode

import pytest
import requests
from sqlalchemy import event as sa_event
from sqlalchemy import func, select, update
from twilio.request_validator import RequestValidator

import gateway.group_commit as group_commit_module
from gateway.group_commit import GroupCommitter, payload_committer
from gateway.simulate import build_message_form
from inbox.models import PayloadStatus, RawPayload
from tests.conftest import TWILIO_AUTH_TOKEN
from tests.support.whatsapp import LOCAL

FORMAT = "twilio-form"


def _body(channel, text: str) -> bytes:
    return urlencode(build_message_form(channel, "+15551230000", text, None)).encode()


def _stored(state) -> list[tuple[bytes, str]]:
    with state.session_factory() as session:
        return [tuple(row) for row in session.execute(select(RawPayload.body, RawPayload.status).order_by(RawPayload.id))]


class _PayloadInserts:
    """Counts the INSERTs into raw_payloads and can hold the first one until released."""

    def __init__(self, engine, hold_first: bool = False) -> None:
        self.count = 0
        self.entered = threading.Event()
        self.release = threading.Event()
        if not hold_first:
            self.release.set()
        sa_event.listen(engine, "before_cursor_execute", self._before)
        self.engine = engine

    def _before(self, connection, cursor, statement, parameters, context, executemany) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO RAW_PAYLOADS"):
            self.count += 1
            self.entered.set()
            assert self.release.wait(10)

    def remove(self) -> None:
        sa_event.remove(self.engine, "before_cursor_execute", self._before)


def _store_in_threads(committer, items) -> tuple[list, list[threading.Thread]]:
    """Start a thread per (channel id, body) that stores it; return the outcomes list and the threads."""
    outcomes: list = [None] * len(items)

    def store(index: int, channel_id: int, body: bytes) -> None:
        try:
            outcomes[index] = committer.store(channel_id, body, FORMAT)
        except Exception as error:  # noqa: BLE001 - the test checks it
            outcomes[index] = error

    threads = [threading.Thread(target=store, args=(index, *item)) for index, item in enumerate(items)]
    for thread in threads:
        thread.start()
    return outcomes, threads


def _store_behind_held_insert(committer, inserts, channel, items) -> tuple[list, list]:
    """Store one payload whose INSERT ``inserts`` holds, then ``items`` while it is held.

    Returns the outcomes of the first payload and of ``items``, which wait together and so
    form the next batch.
    """
    first, first_threads = _store_in_threads(committer, [(channel.id, _body(channel, "first"))])
    assert inserts.entered.wait(10)
    outcomes, threads = _store_in_threads(committer, items)
    _wait_for_waiting(committer, len(items))
    inserts.release.set()
    for thread in first_threads + threads:
        thread.join(10)
    return first, outcomes


def _wait_for_waiting(committer, count: int) -> None:
    deadline = threading.Event()
    for _ in range(500):
        with committer._lock:
            if len(committer._waiting) >= count:
                return
        deadline.wait(0.01)
    raise AssertionError(f"fewer than {count} payloads waited")


def test_concurrent_payloads_share_one_insert(state, whatsapp_channel):
    committer = GroupCommitter(state)
    inserts = _PayloadInserts(state.engine, hold_first=True)
    try:
        # While the first leader's INSERT is held, eight more requests arrive.
        bodies = [_body(whatsapp_channel, f"message {index}") for index in range(8)]
        items = [(whatsapp_channel.id, body) for body in bodies]
        first, outcomes = _store_behind_held_insert(committer, inserts, whatsapp_channel, items)
    finally:
        inserts.remove()

    assert first == [True]
    assert outcomes == [True] * 8
    assert inserts.count == 2
    stored = _stored(state)
    assert len(stored) == 9
    assert {body for body, _ in stored} >= set(bodies)
    assert {status for _, status in stored} == {PayloadStatus.PENDING.value}


def test_same_bytes_in_one_batch_stored_once(state, whatsapp_channel):
    committer = GroupCommitter(state)
    inserts = _PayloadInserts(state.engine, hold_first=True)
    body = _body(whatsapp_channel, "twice")
    try:
        items = [(whatsapp_channel.id, body)] * 3
        first, outcomes = _store_behind_held_insert(committer, inserts, whatsapp_channel, items)
    finally:
        inserts.remove()

    assert sorted(outcomes) == [False, False, True]
    assert [stored for stored, _ in _stored(state)].count(body) == 1


def test_replays_after_commit_not_queued(state, whatsapp_channel):
    committer = payload_committer(state)
    body = _body(whatsapp_channel, "once")

    assert committer.store(whatsapp_channel.id, body, FORMAT) is True
    assert committer.store(whatsapp_channel.id, body, FORMAT) is False

    with state.session_factory() as session:
        session.execute(update(RawPayload).values(status=PayloadStatus.FAILED.value, error="boom"))
        session.commit()
    # A replay of a payload that failed queues it again.
    assert committer.store(whatsapp_channel.id, body, FORMAT) is True
    assert _stored(state) == [(body, PayloadStatus.PENDING.value)]


def test_rejected_payload_fails_alone(state, whatsapp_channel):
    committer = GroupCommitter(state)
    inserts = _PayloadInserts(state.engine, hold_first=True)
    good = [_body(whatsapp_channel, f"good {index}") for index in range(3)]
    try:
        # No channel has this id, so the foreign key rejects its row, and the batch that contains it.
        items = [(whatsapp_channel.id, good[0]), (999_999, _body(whatsapp_channel, "orphan")),
                 (whatsapp_channel.id, good[1]), (whatsapp_channel.id, good[2])]
        first, outcomes = _store_behind_held_insert(committer, inserts, whatsapp_channel, items)
    finally:
        inserts.remove()

    assert first == [True]
    assert outcomes[0] is True
    assert isinstance(outcomes[1], Exception)
    assert outcomes[2:] == [True, True]
    assert len(_stored(state)) == 4
    # The committer goes on after the failure.
    assert committer.store(whatsapp_channel.id, _body(whatsapp_channel, "later"), FORMAT) is True


def test_failed_store_returns_500(app, state, whatsapp_channel):
    def reject(connection, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("INSERT INTO RAW_PAYLOADS"):
            raise RuntimeError("the database rejected the insert")

    form = build_message_form(whatsapp_channel, "+15551230000", "lost?", None)
    path = f"/webhooks/twilio/{whatsapp_channel.id}/messages"
    signature = RequestValidator(TWILIO_AUTH_TOKEN).compute_signature(LOCAL + path, form)
    sa_event.listen(state.engine, "before_cursor_execute", reject)
    try:
        response = app.test_client().post(path, data=form, headers={"X-Twilio-Signature": signature})
    finally:
        sa_event.remove(state.engine, "before_cursor_execute", reject)

    assert response.status_code == 500
    assert response.json["error"]["code"] == "storing_failed"
    with state.session_factory() as session:
        assert session.scalar(select(func.count()).select_from(RawPayload)) == 0
    # Twilio's retry is stored.
    retry = app.test_client().post(path, data=form, headers={"X-Twilio-Signature": signature})
    assert retry.status_code == 200
    assert len(_stored(state)) == 1


def test_concurrent_webhooks_all_acknowledged(live_server, state, whatsapp_channel):
    path = f"/webhooks/twilio/{whatsapp_channel.id}/messages"
    forms = [build_message_form(whatsapp_channel, f"+1555123{index:04d}", f"burst {index}", None)
             for index in range(40)]
    # Every form twice: the replays must be acknowledged too, and stored once.
    items = forms + forms
    statuses: list[int] = [0] * len(items)

    def post(client: int) -> None:
        with requests.Session() as http:
            for position in range(client, len(items), 8):
                form = items[position]
                signature = RequestValidator(TWILIO_AUTH_TOKEN).compute_signature(live_server.url + path, form)
                statuses[position] = http.post(live_server.url + path, data=form,
                                               headers={"X-Twilio-Signature": signature}, timeout=30).status_code

    threads = [threading.Thread(target=post, args=(client,)) for client in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert statuses == [200] * len(items)
    with state.session_factory() as session:
        assert session.scalar(select(func.count(func.distinct(RawPayload.digest)))) == len(forms)
        assert session.scalar(select(func.count()).select_from(RawPayload)) == len(forms)


@pytest.mark.parametrize(("fails", "errors"), [(1, 0), (2, 0), (3, 1)])
def test_batch_retried_one_by_one_after_failure(state, whatsapp_channel, fails, errors):
    """A batch whose statement failed (say, on a connection that went stale) is written again."""
    committer = GroupCommitter(state)
    remaining = [fails]

    def fail(connection, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("INSERT INTO RAW_PAYLOADS") and remaining[0]:
            remaining[0] -= 1
            raise RuntimeError("connection lost")

    # Registered first, so that the first INSERT is held before it fails.
    inserts = _PayloadInserts(state.engine, hold_first=True)
    sa_event.listen(state.engine, "before_cursor_execute", fail)
    try:
        bodies = [_body(whatsapp_channel, f"after {index}") for index in range(3)]
        items = [(whatsapp_channel.id, body) for body in bodies]
        first, outcomes = _store_behind_held_insert(committer, inserts, whatsapp_channel, items)
    finally:
        sa_event.remove(state.engine, "before_cursor_execute", fail)
        inserts.remove()

    # A failed batch of one reports its error. The batch of three, when it failed, is written
    # one payload per transaction, and only a payload whose own transaction failed reports one.
    assert isinstance(first[0], RuntimeError)
    assert sum(isinstance(outcome, RuntimeError) for outcome in outcomes) == errors
    assert outcomes.count(True) == 3 - errors
    stored = {body for body, _ in _stored(state)}
    assert len(stored) == 3 - errors
    assert stored <= set(bodies)


def test_connection_kept_through_short_pauses(state, whatsapp_channel, monkeypatch):
    monkeypatch.setattr(group_commit_module, "CONNECTION_IDLE_SECONDS", 0.3)
    committer = GroupCommitter(state)
    checkouts: list[object] = []

    def count_checkout(*args: object) -> None:
        checkouts.append(args)

    sa_event.listen(state.engine.pool, "checkout", count_checkout)
    try:
        assert committer.store(whatsapp_channel.id, _body(whatsapp_channel, "one"), FORMAT)
        assert committer.store(whatsapp_channel.id, _body(whatsapp_channel, "two"), FORMAT)
        # The second payload, a pause later, used the connection that the first one opened.
        assert len(checkouts) == 1
        assert state.engine.pool.checkedout() == 1

        deadline = time.monotonic() + 5
        while state.engine.pool.checkedout() and time.monotonic() < deadline:
            time.sleep(0.05)
        # After the idle time the connection is back in the pool, and the next payload takes it out again.
        assert state.engine.pool.checkedout() == 0
        assert committer.store(whatsapp_channel.id, _body(whatsapp_channel, "three"), FORMAT)
        assert len(checkouts) == 2
    finally:
        sa_event.remove(state.engine.pool, "checkout", count_checkout)
    assert [status for _, status in _stored(state)] == ["pending"] * 3
