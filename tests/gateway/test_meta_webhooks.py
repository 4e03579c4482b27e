"""Meta Cloud API webhooks end to end: handshake, signatures, batches, replays, statuses, routing."""

from __future__ import annotations

import itertools
import json
import logging
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from channels.types import DeliveryState, SendResult
from gateway import create_app, get_state
from inbox.agents import create_agent, create_api_token
from inbox.channel_config import add_channel
from inbox.ingest import record_failed_payload
from inbox.models import Agent, Channel, Contact, Conversation, Message, RawPayload
from inbox.outbox import claim_next, mark_sent
from inbox.replies import create_reply
from tests.support.meta_server import (
    DEFAULT_ACCESS_TOKEN,
    DEFAULT_APP_SECRET,
    DEFAULT_PHONE_NUMBER_ID,
    change,
    contact,
    encode,
    entry,
    message,
    signature,
    status,
    status_error,
    text_message,
    webhook_body,
)

VERIFY_TOKEN = "verify-token-for-tests"
CUSTOMER = "15551230000"


def _meta_settings(phone_number_id: str = DEFAULT_PHONE_NUMBER_ID, app_secret: str = DEFAULT_APP_SECRET) -> dict:
    return {
        "provider": "meta",
        "phone_number_id": phone_number_id,
        "verify_token": VERIFY_TOKEN,
        "app_secret": app_secret,
        "access_token": DEFAULT_ACCESS_TOKEN,
    }


def _add_meta_channel(state, address: str, **settings) -> Channel:
    with state.session_factory() as session:
        channel = add_channel(session, "whatsapp", "WhatsApp Cloud", address, _meta_settings(**settings))
        session.commit()
        return channel


@pytest.fixture
def meta_channel(state) -> Channel:
    return _add_meta_channel(state, "+15550783881")


def _post(client, channel_id: int, document: dict | None = None, *, body: bytes | None = None,
          secret: str = DEFAULT_APP_SECRET, header: str | None = None):
    body = encode(document) if body is None else body
    headers = {"X-Hub-Signature-256": header if header is not None else signature(secret, body)}
    return client.post(f"/webhooks/meta/{channel_id}", data=body, headers=headers,
                       content_type="application/json")


def _counts(state) -> tuple[int, int, int, int]:
    with state.session_factory() as session:
        return tuple(
            session.scalar(select(func.count()).select_from(model))
            for model in (Conversation, Message, Contact, RawPayload)
        )


def _inbound(text: str = "Where is my parcel?", sender: str = CUSTOMER, message_id: str | None = None) -> dict:
    return webhook_body(entry(change(
        messages=[text_message(sender, text, message_id)], contacts=[contact(sender, "Grace")],
    )))


def _sent_reply(client, state, channel: Channel, agent, provider_message_id: str) -> int:
    """Store an inbound message and an agent's reply that the provider accepted as ``provider_message_id``."""
    _post(client, channel.id, _inbound())
    with state.session_factory() as session:
        conversation_id = session.scalar(select(Conversation.id))
        reply = create_reply(session, conversation_id, agent.id, "It ships today.")
        session.commit()
        reply_id = reply.id
    with state.session_factory() as session:
        pending = claim_next(session)
    with state.session_factory() as session:
        mark_sent(session, pending.item_id, SendResult(provider_message_id, DeliveryState.QUEUED),
                  claim_token=pending.claim_token)
    return reply_id


@pytest.fixture
def client(app):
    return app.test_client()


# Verification handshake


def test_handshake_answers_the_challenge(client, meta_channel):
    response = client.get(
        f"/webhooks/meta/{meta_channel.id}",
        query_string={"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1158201444"},
    )

    assert response.status_code == 200
    assert response.data == b"1158201444"
    assert response.mimetype == "text/plain"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize(
    "query",
    [
        {"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1"},
        {"hub.mode": "subscribe", "hub.challenge": "1"},
        {"hub.mode": "unsubscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1"},
        {},
    ],
)
def test_handshake_with_wrong_token_is_forbidden(client, meta_channel, query):
    response = client.get(f"/webhooks/meta/{meta_channel.id}", query_string=query)

    assert response.status_code == 403
    assert response.json["error"]["code"] == "invalid_verify_token"


def test_handshake_unknown_channel_not_found(client, whatsapp_channel):
    query = {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1"}

    assert client.get("/webhooks/meta/999", query_string=query).status_code == 404
    assert client.get(f"/webhooks/meta/{whatsapp_channel.id}", query_string=query).status_code == 404


# Messages


def test_signed_message_creates_conversation(client, state, meta_channel):
    document = _inbound("My order has not arrived 📦")

    response = _post(client, meta_channel.id, document)

    assert response.status_code == 200
    with state.session_factory() as session:
        stored = session.scalar(select(Message))
        inbound = document["entry"][0]["changes"][0]["value"]["messages"][0]
        assert stored.provider_message_id == inbound["id"]
        assert stored.text == "My order has not arrived 📦"
        assert stored.direction == "inbound"
        assert stored.channel_id == meta_channel.id
        assert stored.raw_payload.format == "meta-json"
        raw = json.loads(stored.raw_payload.body)
        assert raw["entry"][0]["changes"][0]["value"]["messages"] == [inbound]
        conversation = stored.conversation
        assert conversation.contact.name == "Grace"
        assert [(i.kind, i.value) for i in conversation.contact.identities] == [("phone", "+15551230000")]


def test_meta_message_looks_like_twilio(client, state, meta_channel):
    from inbox.serialize import conversation_to_dict, message_to_dict

    _post(client, meta_channel.id, _inbound("hello"))

    with state.session_factory() as session:
        stored = session.scalar(select(Message))
        data = message_to_dict(stored)
        conversation = conversation_to_dict(stored.conversation)
    assert data["channel_kind"] == "whatsapp"
    assert conversation["channel"]["kind"] == "whatsapp"
    assert conversation["contact"]["address"] == "+15551230000"


@pytest.mark.parametrize(
    "header",
    [None, "", "sha256=" + "0" * 64, "sha1=0123", "sha256=" + "\u00e9" * 64],
)
def test_bad_signature_forbidden_stores_nothing(client, state, meta_channel, header):
    body = encode(_inbound())
    headers = {} if header is None else {"X-Hub-Signature-256": header}

    response = client.post(f"/webhooks/meta/{meta_channel.id}", data=body, headers=headers,
                           content_type="application/json")

    assert response.status_code == 403
    assert response.json["error"]["code"] == "invalid_signature"
    assert _counts(state) == (0, 0, 0, 0)


def test_signature_of_another_app_is_forbidden(client, state, meta_channel):
    response = _post(client, meta_channel.id, _inbound(), secret="another-app-secret")

    assert response.status_code == 403
    assert _counts(state) == (0, 0, 0, 0)


def test_tampered_body_is_forbidden(client, state, meta_channel):
    body = encode(_inbound("original"))
    tampered = body.replace(b"original", b"changed!")

    response = _post(client, meta_channel.id, body=tampered, header=signature(DEFAULT_APP_SECRET, body))

    assert response.status_code == 403
    assert _counts(state) == (0, 0, 0, 0)


def test_several_entries_and_changes_are_all_stored(client, state, meta_channel):
    document = webhook_body(
        entry(change(
            messages=[text_message(CUSTOMER, "first"), text_message("15551230001", "from Alan")],
            contacts=[contact(CUSTOMER, "Grace"), contact("15551230001", "Alan")],
        )),
        entry(
            change(messages=[text_message(CUSTOMER, "second")], contacts=[contact(CUSTOMER, "Grace")]),
            change(messages=[message(CUSTOMER, "image", {"id": "4490709327384033", "mime_type": "image/jpeg"})]),
        ),
    )

    response = _post(client, meta_channel.id, document)

    assert response.status_code == 200
    assert _counts(state) == (2, 4, 2, 4)
    with state.session_factory() as session:
        by_contact = {
            conversation.contact.name: [m.text for m in conversation.messages]
            for conversation in session.scalars(select(Conversation))
        }
        image = session.scalar(select(Message).where(Message.text == ""))
        assert image.conversation.snippet == "[1 attachment]"
    assert by_contact == {"Grace": ["first", "second", ""], "Alan": ["from Alan"]}


def test_replayed_body_changes_nothing(client, state, meta_channel):
    document = _inbound("hello")
    assert _post(client, meta_channel.id, document).status_code == 200
    before = _counts(state)

    replay = _post(client, meta_channel.id, document)

    assert replay.status_code == 200
    assert _counts(state) == before == (1, 1, 1, 1)


def test_same_wamid_in_another_body_is_a_duplicate(client, state, meta_channel):
    first = _inbound("hello", message_id="wamid.same.1")
    # Meta's retry of a batch can group the message with others, so the body differs.
    second = webhook_body(entry(change(messages=[
        text_message(CUSTOMER, "hello", "wamid.same.1"), text_message(CUSTOMER, "and more"),
    ])))

    _post(client, meta_channel.id, first)
    _post(client, meta_channel.id, second)

    with state.session_factory() as session:
        assert session.scalars(select(Message.text).order_by(Message.id)).all() == ["hello", "and more"]


def test_unparseable_message_is_kept_and_others_are_stored(client, state, meta_channel):
    document = webhook_body(entry(change(messages=[
        {**text_message(CUSTOMER, "bad sender"), "from": "12"},
        text_message(CUSTOMER, "good"),
    ])))

    response = _post(client, meta_channel.id, document)

    assert response.status_code == 200
    with state.session_factory() as session:
        assert session.scalars(select(Message.text)).all() == ["good"]
        failed = session.scalar(select(RawPayload).where(RawPayload.status == "failed"))
        assert failed.format == "meta-json"
        assert "invalid phone number" in failed.error
        assert json.loads(failed.body)["entry"][0]["changes"][0]["value"]["messages"][0]["from"] == "12"


def test_message_id_long_in_bytes_is_rejected(client, state, meta_channel):
    # 990 CJK characters are within the id's 998 characters, but 2,970 bytes in UTF-8.
    long_id = "wamid." + "".join(chr(0x4E00 + (index * 7919) % 20000) for index in range(990))

    rejected = _post(client, meta_channel.id, _inbound("odd id", message_id=long_id))
    accepted = _post(client, meta_channel.id, _inbound("next one"))

    assert rejected.status_code == 200
    assert accepted.status_code == 200
    with state.session_factory() as session:
        assert session.scalars(select(Message.text)).all() == ["next one"]
        payloads = session.execute(select(RawPayload.status, RawPayload.error).order_by(RawPayload.id)).all()
    assert payloads[0] == ("failed", "missing or over-long message id")
    assert payloads[1] == ("processed", None)


def test_lone_surrogate_escape_is_replaced(client, state, meta_channel):
    # A JSON escape of half a surrogate pair, such as from text cut inside an emoji.
    document = webhook_body(entry(change(
        messages=[text_message(CUSTOMER, "cut \ud83d"), text_message(CUSTOMER, "next one")],
        contacts=[contact(CUSTOMER, "Grace \udc00")],
    )))

    first = _post(client, meta_channel.id, document)
    replay = _post(client, meta_channel.id, document)

    assert first.status_code == 200
    assert replay.status_code == 200
    with state.session_factory() as session:
        assert session.scalars(select(Message.text).order_by(Message.id)).all() == ["cut \ufffd", "next one"]
        assert session.scalar(select(Contact.name)) == "Grace \ufffd"
        assert session.scalar(select(func.count()).select_from(RawPayload)) == 2


@pytest.mark.parametrize("body", [b"not json", b'{"object": "whatsapp_business_account"}'])
def test_malformed_body_kept_as_failed(client, state, meta_channel, body):
    response = _post(client, meta_channel.id, body=body)

    assert response.status_code == 400
    assert response.json["error"]["code"] == "invalid_payload"
    with state.session_factory() as session:
        payload = session.scalar(select(RawPayload))
        assert (payload.status, payload.format, payload.body) == ("failed", "meta-json", body)


def test_kept_message_can_be_reprocessed_by_an_admin(client, state, meta_channel):
    from channels.whatsapp.meta import parse_webhook

    # A message kept as failed, say because storing it failed, is re-processed from its raw payload.
    (parsed,) = parse_webhook(encode(_inbound("kept for later"))).messages
    with state.session_factory() as session:
        payload_id = record_failed_payload(session, meta_channel.id, parsed.message.raw, "meta-json", "storing failed")
        admin = create_agent(session, "root@example.com", "Root", "a long password", "admin")
        session.commit()
        token = create_api_token(session, session.get(Agent, admin.id), "tests")
        session.commit()

    response = client.post(f"/api/v1/payloads/{payload_id}/reprocess", headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == 200, response.json
    assert response.json["duplicate"] is False
    with state.session_factory() as session:
        assert session.scalar(select(Message.text)) == "kept for later"
        assert session.scalars(select(RawPayload.status)).all() == ["processed"]


@pytest.mark.parametrize(
    "document",
    [
        webhook_body(entry({"field": "account_update", "value": {"event": "VERIFIED_ACCOUNT"}})),
        {"object": "page", "entry": [{"id": "1", "changes": []}]},
    ],
)
def test_unsupported_event_gets_ok(client, state, meta_channel, document):
    response = _post(client, meta_channel.id, document)

    assert response.status_code == 200
    assert _counts(state) == (0, 0, 0, 0)


@pytest.mark.parametrize("kind", ["messages", "status"])
def test_twilio_urls_of_meta_channel_not_found(client, state, meta_channel, caplog, kind):
    # Anyone can post here. A Meta channel has no Twilio auth token, and that is no error.
    with caplog.at_level(logging.INFO):
        response = client.post(f"/webhooks/twilio/{meta_channel.id}/{kind}", data={"MessageSid": "SM" + "0" * 32},
                               headers={"X-Twilio-Signature": "forged"})

    assert response.status_code == 404
    assert [record.message for record in caplog.records if record.levelno >= logging.ERROR] == []
    assert _counts(state) == (0, 0, 0, 0)


def test_retried_message_window_runs_from_its_timestamp(client, state, meta_channel, agent):
    # Meta sends a message again for days after an error, with the time the customer sent it.
    written = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=30)
    document = _inbound()
    document["entry"][0]["changes"][0]["value"]["messages"][0]["timestamp"] = str(int(written.timestamp()))

    response = _post(client, meta_channel.id, document)
    with state.session_factory() as session:
        conversation = session.scalar(select(Conversation))
        reply = create_reply(session, conversation.id, agent.id, "Sorry for the wait.")
        session.commit()
        reply_status = reply.outbox_item.status

    assert response.status_code == 200
    assert conversation.last_inbound_at == written
    # The window closed six hours ago, so free text would fail with error 131047.
    assert reply_status == "held"

    # A later message that Meta also sends again only now does not open the window either.
    later_document = _inbound("Hello?")
    later_message = later_document["entry"][0]["changes"][0]["value"]["messages"][0]
    later_message["timestamp"] = str(int((written + timedelta(hours=1)).timestamp()))
    assert _post(client, meta_channel.id, later_document).status_code == 200
    with state.session_factory() as session:
        assert session.scalar(select(Conversation.last_inbound_at)) == written + timedelta(hours=1)
        assert session.get(Message, reply.id).outbox_item.status == "held"


def test_stop_message_opts_the_contact_out(client, state, meta_channel):
    from inbox.serialize import conversation_to_dict

    _post(client, meta_channel.id, _inbound("Stop!"))

    with state.session_factory() as session:
        conversation = conversation_to_dict(session.scalar(select(Conversation)))
    assert conversation["contact"]["opted_out"]["keyword"] == "STOP"


# Routing between the numbers of one app


def test_same_app_number_is_routed(client, state, meta_channel):
    second = _add_meta_channel(state, "+15550783882", phone_number_id="200000000000002")
    document = webhook_body(entry(
        change(messages=[text_message(CUSTOMER, "to the first")]),
        change("200000000000002", messages=[text_message(CUSTOMER, "to the second")]),
    ))

    response = _post(client, meta_channel.id, document)

    assert response.status_code == 200
    with state.session_factory() as session:
        rows = session.execute(select(Message.channel_id, Message.text).order_by(Message.id)).all()
    assert rows == [(meta_channel.id, "to the first"), (second.id, "to the second")]


def test_other_app_number_is_ignored(client, state, meta_channel):
    _add_meta_channel(state, "+15550783882", phone_number_id="200000000000002", app_secret="other-app-secret")
    document = webhook_body(entry(
        change("200000000000002", messages=[text_message(CUSTOMER, "forged")]),
        change("300000000000003", messages=[text_message(CUSTOMER, "unknown number")]),
    ))

    response = _post(client, meta_channel.id, document)

    assert response.status_code == 200
    assert _counts(state) == (0, 0, 0, 0)


# Delivery statuses


def _statuses(*reports: dict) -> dict:
    return webhook_body(entry(change(statuses=list(reports))))


@pytest.mark.parametrize("order", list(itertools.permutations(["sent", "delivered", "read"])))
def test_shuffled_statuses_never_regress(client, state, meta_channel, agent, order):
    reply_id = _sent_reply(client, state, meta_channel, agent, "wamid.reply.1")
    rank = {"queued": 0, "sent": 1, "delivered": 2, "read": 3}

    seen = []
    for name in [*order, *order]:  # every status twice, as Meta's retries do
        assert _post(client, meta_channel.id, _statuses(status("wamid.reply.1", name, CUSTOMER))).status_code == 200
        with state.session_factory() as session:
            seen.append(session.get(Message, reply_id).delivery_status)

    assert seen[-1] == "read"
    assert [rank[s] for s in seen] == sorted(rank[s] for s in seen)


def test_statuses_in_one_body_are_applied_in_order(client, state, meta_channel, agent):
    reply_id = _sent_reply(client, state, meta_channel, agent, "wamid.reply.1")

    _post(client, meta_channel.id, _statuses(
        status("wamid.reply.1", "read", CUSTOMER),
        status("wamid.reply.1", "delivered", CUSTOMER),
        status("wamid.reply.1", "sent", CUSTOMER),
    ))

    with state.session_factory() as session:
        assert session.get(Message, reply_id).delivery_status == "read"


def test_failed_status_shows_code_and_reason(client, state, meta_channel, agent):
    reply_id = _sent_reply(client, state, meta_channel, agent, "wamid.reply.1")
    error = status_error(131026, "Message undeliverable",
                         "The recipient's phone number is not a WhatsApp phone number.")

    _post(client, meta_channel.id, _statuses(status("wamid.reply.1", "failed", CUSTOMER, [error])))
    _post(client, meta_channel.id, _statuses(status("wamid.reply.1", "delivered", CUSTOMER)))

    with state.session_factory() as session:
        reply = session.get(Message, reply_id)
        assert reply.delivery_status == "failed"
        assert reply.delivery_error == (
            "Message undeliverable: The recipient's phone number is not a WhatsApp phone number. "
            "(error 131026)"
        )


def test_early_status_applied_later(client, state, meta_channel, agent):
    _post(client, meta_channel.id, _statuses(status("wamid.early.1", "delivered", CUSTOMER)))

    reply_id = _sent_reply(client, state, meta_channel, agent, "wamid.early.1")

    with state.session_factory() as session:
        assert session.get(Message, reply_id).delivery_status == "delivered"


# Secrets


def test_channel_listing_shows_webhook_url_and_masks_secrets(config, meta_channel):
    app = create_app(replace(config, public_url="https://support.example.com"))
    state = get_state(app)
    with state.session_factory() as session:
        admin = create_agent(session, "root@example.com", "Root", "a long password", "admin")
        session.commit()
        token = create_api_token(session, session.get(Agent, admin.id), "tests")
        session.commit()

    response = app.test_client().get("/api/v1/channels", headers={"Authorization": f"Bearer {token}"})

    (item,) = response.json["items"]
    assert item["webhook_url"] == f"https://support.example.com/webhooks/meta/{meta_channel.id}"
    assert item["settings"]["provider"] == "meta"
    assert item["settings"]["phone_number_id"] == DEFAULT_PHONE_NUMBER_ID
    for name in ("app_secret", "access_token", "verify_token"):
        assert item["settings"][name] == "********"
    for secret in (DEFAULT_APP_SECRET, DEFAULT_ACCESS_TOKEN, VERIFY_TOKEN):
        assert secret not in response.get_data(as_text=True)
    state.engine.dispose()


def test_webhooks_log_no_secrets_or_bodies(client, meta_channel, caplog):
    caplog.set_level(logging.DEBUG)
    query = {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "42"}

    client.get(f"/webhooks/meta/{meta_channel.id}", query_string=query)
    client.get(f"/webhooks/meta/{meta_channel.id}", query_string={**query, "hub.verify_token": "guess"})
    _post(client, meta_channel.id, _inbound("private words"))
    _post(client, meta_channel.id, _inbound("more private words"), secret="wrong")

    for secret in (DEFAULT_APP_SECRET, DEFAULT_ACCESS_TOKEN, VERIFY_TOKEN, "private words", CUSTOMER):
        assert secret not in caplog.text
