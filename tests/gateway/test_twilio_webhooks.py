"""Twilio webhooks end to end: signature, ingestion, replay, proxies, status callbacks."""

from __future__ import annotations

from sqlalchemy import func, select
from twilio.request_validator import RequestValidator

from gateway.simulate import build_message_form
from inbox.models import Contact, Conversation, Message, RawPayload, SendFailure
from tests.conftest import TWILIO_AUTH_TOKEN
from tests.support.whatsapp import ingest_webhooks

LOCAL = "http://localhost"


def _post_signed(client, path: str, form: dict[str, str], signed_url: str | None = None, **kwargs):
    signature = RequestValidator(TWILIO_AUTH_TOKEN).compute_signature(signed_url or LOCAL + path, form)
    return client.post(path, data=form, headers={"X-Twilio-Signature": signature}, **kwargs)


def _counts(state) -> tuple[int, int, int, int]:
    with state.session_factory() as session:
        return tuple(
            session.scalar(select(func.count()).select_from(model))
            for model in (Conversation, Message, Contact, RawPayload)
        )


def test_signed_webhook_creates_conversation(app, state, whatsapp_channel):
    form = build_message_form(whatsapp_channel, "+15551230000", "My order has not arrived 📦", "Grace")
    path = f"/webhooks/twilio/{whatsapp_channel.id}/messages"

    response = _post_signed(app.test_client(), path, form)

    assert response.status_code == 200
    assert b"<Response>" in response.data
    assert ingest_webhooks(state) == 1
    with state.session_factory() as session:
        message = session.scalar(select(Message))
        assert message.provider_message_id == form["MessageSid"]
        assert message.text == "My order has not arrived 📦"
        assert message.direction == "inbound"
        assert b"MessageSid=" + form["MessageSid"].encode() in message.raw_payload.body
        conversation = message.conversation
        assert conversation.unread_count == 1
        assert conversation.contact.name == "Grace"
        assert [(i.kind, i.value) for i in conversation.contact.identities] == [("phone", "+15551230000")]


def test_replayed_webhook_changes_nothing(app, state, whatsapp_channel):
    form = build_message_form(whatsapp_channel, "+15551230000", "hello", None)
    path = f"/webhooks/twilio/{whatsapp_channel.id}/messages"
    client = app.test_client()
    assert _post_signed(client, path, form).status_code == 200
    ingest_webhooks(state)
    before = _counts(state)

    replay = _post_signed(client, path, form)

    assert replay.status_code == 200
    assert ingest_webhooks(state) == 0
    assert _counts(state) == before == (1, 1, 1, 1)


def test_second_message_joins_open_conversation(app, state, whatsapp_channel):
    path = f"/webhooks/twilio/{whatsapp_channel.id}/messages"
    client = app.test_client()
    for text in ("first", "second"):
        form = build_message_form(whatsapp_channel, "+15551230000", text, None)
        assert _post_signed(client, path, form).status_code == 200
    ingest_webhooks(state)

    with state.session_factory() as session:
        conversations = session.scalars(select(Conversation)).all()
        assert len(conversations) == 1
        assert [m.text for m in conversations[0].messages] == ["first", "second"]
        assert conversations[0].unread_count == 2


def test_missing_signature_is_rejected_and_stores_nothing(app, state, whatsapp_channel):
    form = build_message_form(whatsapp_channel, "+15551230000", "hello", None)

    response = app.test_client().post(f"/webhooks/twilio/{whatsapp_channel.id}/messages", data=form)

    assert response.status_code == 403
    assert _counts(state) == (0, 0, 0, 0)


def test_wrong_signature_is_rejected_and_stores_nothing(app, state, whatsapp_channel):
    form = build_message_form(whatsapp_channel, "+15551230000", "hello", None)
    path = f"/webhooks/twilio/{whatsapp_channel.id}/messages"
    signature = RequestValidator("another-token").compute_signature(LOCAL + path, form)

    response = app.test_client().post(path, data=form, headers={"X-Twilio-Signature": signature})

    assert response.status_code == 403
    assert _counts(state) == (0, 0, 0, 0)


def test_tampered_body_is_rejected(app, state, whatsapp_channel):
    form = build_message_form(whatsapp_channel, "+15551230000", "hello", None)
    path = f"/webhooks/twilio/{whatsapp_channel.id}/messages"
    signature = RequestValidator(TWILIO_AUTH_TOKEN).compute_signature(LOCAL + path, form)

    response = app.test_client().post(
        path, data={**form, "Body": "changed"}, headers={"X-Twilio-Signature": signature}
    )

    assert response.status_code == 403
    assert _counts(state) == (0, 0, 0, 0)


def test_signature_validates_behind_tls_proxy(config, whatsapp_channel):
    from dataclasses import replace

    from gateway import create_app

    proxied = create_app(replace(config, public_url="https://support.example.com"))
    form = build_message_form(whatsapp_channel, "+15551230000", "via proxy", None)
    path = f"/webhooks/twilio/{whatsapp_channel.id}/messages"
    client = proxied.test_client()

    # Twilio signed the public https URL; the request reaches us over plain http.
    signed_public = _post_signed(client, path, form, signed_url="https://support.example.com" + path)
    signed_local = _post_signed(client, path, {**form, "MessageSid": "SM" + "1" * 32})

    assert signed_public.status_code == 200
    assert signed_local.status_code == 403


def test_signature_validates_with_query_string(app, state, whatsapp_channel):
    form = build_message_form(whatsapp_channel, "+15551230000", "with query", None)
    path = f"/webhooks/twilio/{whatsapp_channel.id}/messages?source=console&x=1"

    ok = _post_signed(app.test_client(), path, form)
    dropped_query = _post_signed(
        app.test_client(), path, {**form, "MessageSid": "SM" + "2" * 32},
        signed_url=LOCAL + path.split("?")[0],
    )

    assert ok.status_code == 200
    assert dropped_query.status_code == 403


def test_non_whatsapp_sender_is_kept_as_failed_payload(app, state, whatsapp_channel):
    form = build_message_form(whatsapp_channel, "+15551230000", "plain sms", None)
    form["From"] = "+15551230000"

    response = _post_signed(app.test_client(), f"/webhooks/twilio/{whatsapp_channel.id}/messages", form)

    assert response.status_code == 400
    assert response.json["error"]["code"] == "invalid_payload"
    with state.session_factory() as session:
        payload = session.scalar(select(RawPayload))
        assert payload.status == "failed"
        assert payload.error
        assert session.scalar(select(func.count()).select_from(Message)) == 0


def test_unknown_channel_is_not_found(app):
    response = app.test_client().post("/webhooks/twilio/999/messages", data={"MessageSid": "SM1"})
    assert response.status_code == 404


def _sent_reply(client, state, channel, agent, provider_message_id: str) -> int:
    """Store a customer's message and a reply that Twilio accepted as ``provider_message_id``."""
    from inbox.replies import create_reply

    inbound = build_message_form(channel, "+15551230000", "hi", None)
    _post_signed(client, f"/webhooks/twilio/{channel.id}/messages", inbound)
    ingest_webhooks(state)
    with state.session_factory() as session:
        conversation_id = session.scalar(select(Conversation.id))
        reply = create_reply(session, conversation_id, agent.id, "Hello!")
        reply.provider_message_id = provider_message_id
        session.commit()
        return reply.id


def test_status_callbacks_never_regress(app, state, whatsapp_channel, agent):
    client = app.test_client()
    reply_id = _sent_reply(client, state, whatsapp_channel, agent, "SM" + "f" * 32)

    path = f"/webhooks/twilio/{whatsapp_channel.id}/status"
    seen = []
    for status in ("sent", "delivered", "read", "sent", "delivered"):
        form = {"MessageSid": "SM" + "f" * 32, "MessageStatus": status, "AccountSid": "AC" + "0" * 32}
        assert _post_signed(client, path, form).status_code == 204
        ingest_webhooks(state)
        with state.session_factory() as session:
            seen.append(session.get(Message, reply_id).delivery_status)

    assert seen == ["sent", "delivered", "read", "read", "read"]


def test_status_callback_on_messages_url_is_applied(app, state, whatsapp_channel, agent):
    client = app.test_client()
    reply_id = _sent_reply(client, state, whatsapp_channel, agent, "SM" + "e" * 32)
    path = f"/webhooks/twilio/{whatsapp_channel.id}/messages"
    # What Twilio posts when the sender's status callback URL is the messages URL, for this
    # reply and for a send that is not recorded yet.
    responses = []
    for sid in ("SM" + "e" * 32, "SM" + "d" * 32):
        form = {
            "MessageSid": sid, "SmsSid": sid, "AccountSid": "AC" + "0" * 32,
            "From": f"whatsapp:{whatsapp_channel.address}", "To": "whatsapp:+15551230000",
            "MessageStatus": "delivered", "SmsStatus": "delivered", "ApiVersion": "2010-04-01",
        }
        responses.append(_post_signed(client, path, form).status_code)

    assert responses == [204, 204]
    assert ingest_webhooks(state) == 0
    with state.session_factory() as session:
        assert session.get(Message, reply_id).delivery_status == "delivered"
        assert session.scalar(select(func.count()).select_from(Message)) == 2
        assert session.scalar(select(func.count()).select_from(Contact)) == 1


def test_status_for_customer_message_changes_nothing(app, state, whatsapp_channel):
    client = app.test_client()
    form = build_message_form(whatsapp_channel, "+15551230000", "Where is my parcel?", "Grace")
    assert _post_signed(client, f"/webhooks/twilio/{whatsapp_channel.id}/messages", form).status_code == 200
    ingest_webhooks(state)
    # A report that names the customer's own message, which no send of ours can have.
    status = {"MessageSid": form["MessageSid"], "MessageStatus": "failed", "ErrorCode": "30008",
              "AccountSid": "AC" + "0" * 32}

    response = _post_signed(client, f"/webhooks/twilio/{whatsapp_channel.id}/status", status)
    ingest_webhooks(state)

    assert response.status_code == 204
    with state.session_factory() as session:
        message = session.scalar(select(Message))
        assert message.delivery_status is None
        assert message.delivery_error is None
        assert session.scalar(select(func.count()).select_from(SendFailure)) == 0


def test_status_for_id_long_in_bytes_is_ignored(app, state, whatsapp_channel):
    from inbox.models import EarlyDeliveryReport

    # 990 CJK characters are within an id's 998 characters, but 2,970 bytes in UTF-8.
    long_sid = "".join(chr(0x4E00 + (index * 7919) % 20000) for index in range(990))
    form = {"MessageSid": long_sid, "MessageStatus": "delivered", "AccountSid": "AC" + "0" * 32}

    response = _post_signed(app.test_client(), f"/webhooks/twilio/{whatsapp_channel.id}/status", form)

    assert response.status_code == 204
    with state.session_factory() as session:
        assert session.scalar(select(func.count()).select_from(EarlyDeliveryReport)) == 0


def test_channel_without_auth_token_rejects_everything(app, state):
    from inbox.models import Channel

    with state.session_factory() as session:
        channel = Channel(kind="whatsapp", name="Broken", address="+14155230000", settings={"auth_token": ""})
        session.add(channel)
        session.commit()
    form = build_message_form(channel, "+15551230000", "hello", None)
    path = f"/webhooks/twilio/{channel.id}/messages"
    signature = RequestValidator("").compute_signature(LOCAL + path, form)

    response = app.test_client().post(path, data=form, headers={"X-Twilio-Signature": signature})

    assert response.status_code == 403
    assert _counts(state) == (0, 0, 0, 0)


def test_nul_characters_are_removed_from_text(app, state, whatsapp_channel):
    form = build_message_form(whatsapp_channel, "+15551230000", "hel\x00lo", "Gr\x00ace")

    response = _post_signed(app.test_client(), f"/webhooks/twilio/{whatsapp_channel.id}/messages", form)

    assert response.status_code == 200
    ingest_webhooks(state)
    with state.session_factory() as session:
        message = session.scalar(select(Message))
        assert message.text == "hello"
        assert message.contact.name == "Grace"


def test_nul_characters_are_removed_from_media(app, state, whatsapp_channel):
    form = build_message_form(whatsapp_channel, "+15551230000", "photo", None)
    form.update(NumMedia="1", MediaUrl0="https://api.twilio.com/media/ME\x001", MediaContentType0="image/jpeg\x00")

    response = _post_signed(app.test_client(), f"/webhooks/twilio/{whatsapp_channel.id}/messages", form)

    assert response.status_code == 200
    assert ingest_webhooks(state) == 1
    with state.session_factory() as session:
        attachment = session.scalar(select(Message)).attachments[0]
        assert attachment.source_url == "https://api.twilio.com/media/ME1"
        assert attachment.content_type == "image/jpeg"


def test_oversized_message_sid_is_kept_as_failed(app, state, whatsapp_channel):
    form = build_message_form(whatsapp_channel, "+15551230000", "hello", None)
    form["MessageSid"] = "SM" + "a" * 2000

    response = _post_signed(app.test_client(), f"/webhooks/twilio/{whatsapp_channel.id}/messages", form)

    assert response.status_code == 400
    with state.session_factory() as session:
        assert session.scalar(select(RawPayload.status)) == "failed"
        assert session.scalar(select(func.count()).select_from(Message)) == 0


def test_failed_payload_is_retried_by_a_replay(app, state, whatsapp_channel):
    from inbox.ingest import record_failed_payload
    from urllib.parse import urlencode

    form = build_message_form(whatsapp_channel, "+15551230000", "retry me", None)
    with state.session_factory() as session:
        record_failed_payload(session, whatsapp_channel.id, urlencode(form).encode(), "twilio-form", "database was down")

    path = f"/webhooks/twilio/{whatsapp_channel.id}/messages"
    signature = RequestValidator(TWILIO_AUTH_TOKEN).compute_signature(LOCAL + path, form)
    response = app.test_client().post(
        path, data=urlencode(form), content_type="application/x-www-form-urlencoded",
        headers={"X-Twilio-Signature": signature},
    )

    assert response.status_code == 200
    assert ingest_webhooks(state) == 1
    with state.session_factory() as session:
        assert session.scalar(select(Message.text)) == "retry me"
        assert session.scalars(select(RawPayload.status)).all() == ["processed"]
