"""WhatsApp content through signed Twilio webhooks into the database and the API: emoji,
locations, contact cards, buttons, reactions, quoted replies, and one contact per number."""

from __future__ import annotations

import secrets

from sqlalchemy import func, select
from twilio.request_validator import RequestValidator

from gateway import get_state
from inbox.channel_config import add_channel
from inbox.models import Channel, Contact, ContactIdentity, Conversation, Message
from inbox.replies import create_reply
from tests.conftest import TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, WHATSAPP_NUMBER
from tests.support.whatsapp import ingest_webhooks

LOCAL = "http://localhost"
CUSTOMER = "+4915123456789"


def _webhook(client, channel_id: int, **fields: str) -> tuple[str, object]:
    """Post a signed incoming-message webhook and return its MessageSid and the response."""
    sid = fields.pop("MessageSid", "SM" + secrets.token_hex(16))
    form = {
        "MessageSid": sid,
        "SmsMessageSid": sid,
        "AccountSid": TWILIO_ACCOUNT_SID,
        "From": f"whatsapp:{CUSTOMER}",
        "To": f"whatsapp:{WHATSAPP_NUMBER}",
        "WaId": CUSTOMER.lstrip("+"),
        "ProfileName": "Zoë",
        "Body": "",
        "NumMedia": "0",
        "SmsStatus": "received",
        "ApiVersion": "2010-04-01",
        **fields,
    }
    path = f"/webhooks/twilio/{channel_id}/messages"
    signature = RequestValidator(TWILIO_AUTH_TOKEN).compute_signature(LOCAL + path, form)
    response = client.post(path, data=form, headers={"X-Twilio-Signature": signature})
    ingest_webhooks(get_state(client.application))
    return sid, response


def _message(state, sid: str) -> Message:
    with state.session_factory() as session:
        message = session.scalar(select(Message).where(Message.provider_message_id == sid))
        session.expunge(message)
        return message


def _api_message(client, token: str, sid: str, state) -> dict:
    message = _message(state, sid)
    response = client.get(
        f"/api/v1/conversations/{message.conversation_id}", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 200
    return next(item for item in response.get_json()["messages"] if item["id"] == message.id)


def test_four_byte_text_and_name_are_stored_intact(app, state, whatsapp_channel):
    text = "Paket kaputt 📦💥 — 𝄞 𠜎 👨‍👩‍👧 🇩🇪 👍🏽"

    sid, response = _webhook(app.test_client(), whatsapp_channel.id, Body=text, ProfileName="Zoë 🌻 Müller")

    assert response.status_code == 200
    with state.session_factory() as session:
        message = session.scalar(select(Message).where(Message.provider_message_id == sid))
        assert message.text == text
        assert message.contact.name == "Zoë 🌻 Müller"
        assert message.conversation.snippet == text


def test_location_reaches_api_as_map_link(app, state, whatsapp_channel, api_token):
    client = app.test_client()
    sid, response = _webhook(client, whatsapp_channel.id, MessageType="location", Latitude="52.520008",
                             Longitude="13.404954", Label="Pickup point", Address="Alexanderplatz 1")
    assert response.status_code == 200

    message = _api_message(client, api_token, sid, state)

    assert message["content"]["type"] == "location"
    assert message["content"]["url"] == (
        "https://www.openstreetmap.org/?mlat=52.520008&mlon=13.404954#map=17/52.520008/13.404954"
    )
    assert message["text"].startswith("Shared location: 52.520008, 13.404954 (Pickup point, Alexanderplatz 1)")


def test_invalid_location_is_kept_and_rejected(app, state, whatsapp_channel):
    _, response = _webhook(app.test_client(), whatsapp_channel.id, MessageType="location",
                           Latitude="123", Longitude="13")

    assert response.status_code == 400
    assert "Latitude" in response.get_json()["error"]["message"]
    with state.session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Message)) == 0


def test_contact_card_and_button_reply_keep_content(app, state, whatsapp_channel, api_token):
    client = app.test_client()
    card_sid, _ = _webhook(client, whatsapp_channel.id, NumMedia="1", MessageType="contacts",
                           MediaContentType0="text/vcard", MediaUrl0="https://api.twilio.com/media/ME1")
    button_sid, _ = _webhook(client, whatsapp_channel.id, MessageType="button", Body="Reschedule",
                             ButtonText="Reschedule", ButtonPayload="slot:2026-12-07T09:00")

    card = _api_message(client, api_token, card_sid, state)
    button = _api_message(client, api_token, button_sid, state)

    assert (card["text"], card["content"]) == ("Shared a contact card", {"type": "contacts", "count": 1})
    assert button["content"] == {"type": "button", "text": "Reschedule", "payload": "slot:2026-12-07T09:00"}


def test_quoted_reply_links_to_earlier_message(app, state, whatsapp_channel, api_token):
    client = app.test_client()
    first_sid, _ = _webhook(client, whatsapp_channel.id, Body="Order 4711 is missing")
    reply_sid, _ = _webhook(client, whatsapp_channel.id, Body="Any news on this?",
                            OriginalRepliedMessageSid=first_sid)

    reply = _api_message(client, api_token, reply_sid, state)

    first = _message(state, first_sid)
    assert reply["reply_to"] == {
        "id": first.id,
        "conversation_id": first.conversation_id,
        "direction": "inbound",
        "snippet": "Order 4711 is missing",
    }


def test_quoted_reply_to_unknown_sid_is_stored_unlinked(app, state, whatsapp_channel):
    sid, response = _webhook(app.test_client(), whatsapp_channel.id, Body="this one",
                             OriginalRepliedMessageSid="SM" + "0" * 32)

    assert response.status_code == 200
    message = _message(state, sid)
    assert message.reply_to_message_id is None
    assert message.in_reply_to == "SM" + "0" * 32


def test_quote_of_another_contacts_message_is_not_linked(app, state, whatsapp_channel):
    client = app.test_client()
    other_sid, _ = _webhook(client, whatsapp_channel.id, Body="mine", From="whatsapp:+31612345678",
                            WaId="31612345678")

    sid, _ = _webhook(client, whatsapp_channel.id, Body="quoting", OriginalRepliedMessageSid=other_sid)

    assert _message(state, sid).reply_to_message_id is None


def test_reaction_to_reply_leaves_resolved_conversation(app, state, whatsapp_channel, agent):
    client = app.test_client()
    first_sid, _ = _webhook(client, whatsapp_channel.id, Body="Where is my parcel?")
    first = _message(state, first_sid)
    reply_sid = "SM" + secrets.token_hex(16)
    with state.session_factory() as session:
        reply = create_reply(session, first.conversation_id, agent.id, "It arrives tomorrow.")
        reply.provider_message_id = reply_sid
        conversation = session.get(Conversation, first.conversation_id)
        conversation.status = "resolved"
        conversation.unread_count = 0
        session.commit()
        reply_id = reply.id

    sid, response = _webhook(client, whatsapp_channel.id, MessageType="reaction", Body="🙏",
                             OriginalRepliedMessageSid=reply_sid)

    assert response.status_code == 200
    reaction = _message(state, sid)
    assert reaction.reply_to_message_id == reply_id
    assert reaction.content == {"type": "reaction", "emoji": "🙏"}
    assert reaction.thread_reason == "reaction"
    with state.session_factory() as session:
        conversation = session.get(Conversation, first.conversation_id)
        assert conversation.status == "resolved"
        assert conversation.unread_count == 0
        assert conversation.snippet == "It arrives tomorrow."


def test_number_spellings_are_one_contact(app, state, whatsapp_channel):
    client = app.test_client()
    spellings = ["whatsapp:+4915123456789", "whatsapp:+49 1512 3456789", "whatsapp:004915123456789"]

    for spelling in spellings:
        _, response = _webhook(client, whatsapp_channel.id, Body="hello", From=spelling)
        assert response.status_code == 200

    with state.session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Contact)) == 1
        assert session.scalars(select(ContactIdentity.value)).all() == [CUSTOMER]
        assert session.scalar(select(func.count()).select_from(Conversation)) == 1


def test_same_number_on_another_channel_is_same_contact(app, state, whatsapp_channel):
    with state.session_factory() as session:
        second = add_channel(
            session, "whatsapp", "Sales", "+14155550100",
            {"account_sid": TWILIO_ACCOUNT_SID, "auth_token": TWILIO_AUTH_TOKEN},
        )
        session.commit()
    client = app.test_client()

    _webhook(client, whatsapp_channel.id, Body="support question")
    _webhook(client, second.id, Body="sales question", To="whatsapp:+14155550100")

    with state.session_factory() as session:
        conversations = session.scalars(select(Conversation).order_by(Conversation.id)).all()
        assert [c.channel_id for c in conversations] == [whatsapp_channel.id, second.id]
        assert conversations[0].contact_id == conversations[1].contact_id


def test_profile_name_follows_changes_until_agent_renames(app, state, whatsapp_channel, api_token):
    client = app.test_client()
    headers = {"Authorization": f"Bearer {api_token}"}

    _webhook(client, whatsapp_channel.id, Body="hi", ProfileName="Zoë")
    _webhook(client, whatsapp_channel.id, Body="hi again", ProfileName="Zoë M.")
    with state.session_factory() as session:
        contact = session.scalar(select(Contact))
        assert (contact.name, contact.name_set_by_agent) == ("Zoë M.", False)
        contact_id = contact.id

    renamed = client.patch(f"/api/v1/contacts/{contact_id}", json={"name": "Zoë Müller (VIP)"}, headers=headers)
    _webhook(client, whatsapp_channel.id, Body="still me", ProfileName="zoe")

    assert renamed.status_code == 200
    assert renamed.get_json() == {"id": contact_id, "name": "Zoë Müller (VIP)", "name_set_by_agent": True}
    with state.session_factory() as session:
        assert session.get(Contact, contact_id).name == "Zoë Müller (VIP)"

    cleared = client.patch(f"/api/v1/contacts/{contact_id}", json={"name": None}, headers=headers)
    _webhook(client, whatsapp_channel.id, Body="and again", ProfileName="zoe")

    assert cleared.get_json()["name_set_by_agent"] is False
    with state.session_factory() as session:
        assert session.get(Contact, contact_id).name == "zoe"


def test_rename_rejects_bad_input(app, state, whatsapp_channel, api_token):
    client = app.test_client()
    headers = {"Authorization": f"Bearer {api_token}"}
    _webhook(client, whatsapp_channel.id, Body="hi")
    with state.session_factory() as session:
        contact_id = session.scalar(select(Contact.id))

    too_long = client.patch(f"/api/v1/contacts/{contact_id}", json={"name": "x" * 201}, headers=headers)
    not_text = client.patch(f"/api/v1/contacts/{contact_id}", json={"name": 5}, headers=headers)
    missing = client.patch("/api/v1/contacts/999999", json={"name": "A"}, headers=headers)

    assert (too_long.status_code, too_long.get_json()["error"]["field"]) == (400, "name")
    assert (not_text.status_code, not_text.get_json()["error"]["field"]) == (400, "name")
    assert missing.status_code == 404


def test_changed_auth_token_applies_at_once(app, state, whatsapp_channel):
    client = app.test_client()
    _, first = _webhook(client, whatsapp_channel.id, Body="signed with the old token")
    with state.session_factory() as session:
        channel = session.get(Channel, whatsapp_channel.id)
        channel.settings = {**channel.settings, "auth_token": "a-new-token"}
        session.commit()
    path = f"/webhooks/twilio/{whatsapp_channel.id}/messages"
    form = {"MessageSid": "SM" + secrets.token_hex(16), "From": f"whatsapp:{CUSTOMER}", "Body": "new token"}

    new = client.post(path, data=form, headers={
        "X-Twilio-Signature": RequestValidator("a-new-token").compute_signature(LOCAL + path, form)})
    forged = client.post(path, data=form, headers={
        "X-Twilio-Signature": RequestValidator("a-guessed-token").compute_signature(LOCAL + path, form)})

    assert first.status_code == 200
    assert new.status_code == 200
    assert forged.status_code == 403
