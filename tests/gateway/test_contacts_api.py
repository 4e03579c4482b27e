"""The contact routes: profile, paging of past conversations, search, edits, merge."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from inbox.models import Contact, ContactIdentity, ContactMerge, Role, utcnow
from tests.conftest import login
from tests.support.contacts import add_email_channel, contact_of, receive_mail
from tests.support.conversations import add_agent, receive
from tests.support.whatsapp import post_inbound

PHONE = "+15551230042"
EMAIL = "grace@example.org"


@pytest.fixture
def email_channel(state):
    return add_email_channel(state)


@pytest.fixture
def bearer(api_token):
    return {"Authorization": f"Bearer {api_token}"}


@pytest.fixture
def grace(state, whatsapp_channel, email_channel):
    """Grace as two contacts: three mails from her address, one WhatsApp message from her phone."""
    mails = [
        receive_mail(state, email_channel.id, EMAIL, f"Question {n}", name="Grace Hopper", subject=f"Order {n}")
        for n in range(3)
    ]
    whatsapp = receive(state, whatsapp_channel.id, PHONE, "Hi, it is Grace")
    return {
        "email_contact": contact_of(state, mails[0].conversation_id),
        "phone_contact": contact_of(state, whatsapp.conversation_id),
        "mail_conversations": [result.conversation_id for result in mails],
        "whatsapp_conversation": whatsapp.conversation_id,
    }


def test_profile_lists_identities_and_pages_conversations(app, state, grace, bearer):
    client = app.test_client()
    with state.session_factory() as session:
        identity = session.scalar(select(ContactIdentity).where(ContactIdentity.value == EMAIL))
        identity.failing_since = utcnow()
        identity.failure_reason = "550 5.1.1 mailbox unknown"
        session.commit()

    first = client.get(f"/api/v1/contacts/{grace['email_contact']}?limit=2", headers=bearer)

    assert first.status_code == 200
    profile = first.get_json()
    assert profile["name"] == "Grace Hopper"
    assert profile["notes"] == ""
    assert profile["created_at"].endswith("Z")
    [email] = profile["identities"]
    assert (email["kind"], email["value"]) == ("email", EMAIL)
    assert email["failing"]["reason"] == "550 5.1.1 mailbox unknown"
    assert profile["merges"] == []
    newest_first = list(reversed(grace["mail_conversations"]))
    assert [item["id"] for item in profile["conversations"]["items"]] == newest_first[:2]
    assert profile["conversations"]["items"][0]["channel"]["kind"] == "email"

    cursor = profile["conversations"]["next_cursor"]
    rest = client.get(
        f"/api/v1/contacts/{grace['email_contact']}/conversations?limit=2&cursor={cursor}", headers=bearer
    ).get_json()
    assert [item["id"] for item in rest["items"]] == newest_first[2:]
    assert rest["next_cursor"] is None


def test_search_by_name_email_and_phone(app, grace, bearer):
    client = app.test_client()

    def found(query: str) -> list[int]:
        response = client.get("/api/v1/contacts", query_string={"q": query}, headers=bearer)
        assert response.status_code == 200
        return [item["id"] for item in response.get_json()["items"]]

    assert found("Hopper") == [grace["email_contact"]]
    assert found("grace@") == [grace["email_contact"]]
    assert found("555 123 0042") == [grace["phone_contact"]]
    assert found("nobody") == []
    missing = client.get("/api/v1/contacts", headers=bearer)
    assert (missing.status_code, missing.get_json()["error"]["field"]) == (400, "q")
    too_many = client.get("/api/v1/contacts?q=grace&limit=500", headers=bearer)
    assert (too_many.status_code, too_many.get_json()["error"]["field"]) == (400, "limit")


def test_agent_edits_name_and_notes_with_csrf(app, state, agent, grace):
    client = app.test_client()
    token = login(client)
    path = f"/api/v1/contacts/{grace['phone_contact']}"

    refused = client.patch(path, json={"notes": "VIP"})
    saved = client.patch(path, json={"name": "Grace H.", "notes": "  VIP, call before noon  "}, headers={"X-CSRF-Token": token})
    notes_only = client.patch(path, json={"notes": "VIP"}, headers={"X-CSRF-Token": token})

    assert (refused.status_code, refused.get_json()["error"]["code"]) == (403, "csrf_failed")
    assert saved.status_code == 200
    assert saved.get_json() == {
        "id": grace["phone_contact"], "name": "Grace H.", "name_set_by_agent": True, "notes": "VIP, call before noon",
    }
    assert notes_only.get_json() == {"id": grace["phone_contact"], "notes": "VIP"}
    profile = client.get(path).get_json()
    assert (profile["name"], profile["notes"]) == ("Grace H.", "VIP")


def test_time_zone_set_normalized_and_cleared(app, state, grace, bearer):
    client = app.test_client()
    path = f"/api/v1/contacts/{grace['phone_contact']}"

    saved = client.patch(path, json={"time_zone": "  Europe/Berlin "}, headers=bearer)
    profile = client.get(path, headers=bearer).get_json()
    cleared = client.patch(path, json={"time_zone": None}, headers=bearer)
    emptied_after_set = client.patch(path, json={"time_zone": "Asia/Tokyo"}, headers=bearer)
    emptied = client.patch(path, json={"time_zone": ""}, headers=bearer)

    assert saved.status_code == 200
    assert saved.get_json() == {
        "id": grace["phone_contact"], "time_zone": "Europe/Berlin",
        "time_zone_in_use": {"name": "Europe/Berlin", "source": "contact"},
    }
    assert profile["time_zone"] == "Europe/Berlin"
    assert profile["time_zone_in_use"] == {"name": "Europe/Berlin", "source": "contact"}
    assert cleared.get_json() == {
        "id": grace["phone_contact"], "time_zone": None, "time_zone_in_use": {"name": "UTC", "source": "workspace"},
    }
    assert emptied_after_set.get_json()["time_zone"] == "Asia/Tokyo"
    assert emptied.get_json()["time_zone"] is None
    with state.session_factory() as session:
        assert session.get(Contact, grace["phone_contact"]).time_zone is None


def test_zone_in_use_from_phone_number(app, state, whatsapp_channel, bearer):
    berlin = receive(state, whatsapp_channel.id, "+4915112345678", "Hallo")
    path = f"/api/v1/contacts/{contact_of(state, berlin.conversation_id)}"

    profile = app.test_client().get(path, headers=bearer).get_json()

    assert profile["time_zone"] is None
    assert profile["time_zone_in_use"] == {"name": "Europe/Berlin", "source": "phone"}


def test_time_zone_in_other_case_stored_canonically(app, grace, bearer):
    response = app.test_client().patch(
        f"/api/v1/contacts/{grace['phone_contact']}", json={"time_zone": " america/new_york"}, headers=bearer
    )

    assert response.status_code == 200
    assert response.get_json()["time_zone"] == "America/New_York"


def test_unknown_time_zone_message(app, grace, bearer):
    response = app.test_client().patch(
        f"/api/v1/contacts/{grace['phone_contact']}", json={"time_zone": "Europe/Atlantis"}, headers=bearer
    )

    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["field"] == "time_zone"
    assert error["message"].startswith("'Europe/Atlantis' is not a known IANA time zone")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"notes": "x" * 10_001}, "notes"),
        ({"notes": 12}, "notes"),
        ({"name": ["Grace"]}, "name"),
        ({"nickname": "G"}, "nickname"),
        ({"time_zone": 1}, "time_zone"),
        ({"time_zone": "Mars/Olympus_Mons"}, "time_zone"),
        ({"time_zone": "../../etc/passwd"}, "time_zone"),
        ({"time_zone": "localtime"}, "time_zone"),
        ({"time_zone": "UTC\x00"}, "time_zone"),
        ({"time_zone": "x" * 5000}, "time_zone"),
        ({}, None),
        ([], None),
    ],
)
def test_bad_edits_are_refused(app, grace, bearer, body, field):
    response = app.test_client().patch(f"/api/v1/contacts/{grace['phone_contact']}", json=body, headers=bearer)

    assert response.status_code == 400
    assert response.get_json()["error"].get("field") == field


def test_unknown_contact_is_404(app, grace, bearer):
    client = app.test_client()
    assert client.get("/api/v1/contacts/999999", headers=bearer).status_code == 404
    assert client.get("/api/v1/contacts/999999/conversations", headers=bearer).status_code == 404
    assert client.patch("/api/v1/contacts/999999", json={"notes": "x"}, headers=bearer).status_code == 404
    response = client.post(f"/api/v1/contacts/{grace['email_contact']}/merge", json={"other_id": 999999}, headers=bearer)
    assert (response.status_code, response.get_json()["error"]["field"]) == (404, "other_id")


def test_agent_merge_then_repeat(app, state, grace):
    agent = add_agent(state, "lin@example.com", "Lin Agent", Role.AGENT.value)
    client = app.test_client()
    token = login(client, agent.email)
    kept, merged = grace["email_contact"], grace["phone_contact"]
    path = f"/api/v1/contacts/{kept}/merge"

    without_token = client.post(path, json={"other_id": merged})
    done = client.post(path, json={"other_id": merged}, headers={"X-CSRF-Token": token})
    again = client.post(path, json={"other_id": merged}, headers={"X-CSRF-Token": token})
    itself = client.post(path, json={"other_id": kept}, headers={"X-CSRF-Token": token})
    edit_gone = client.patch(f"/api/v1/contacts/{merged}", json={"notes": "x"}, headers={"X-CSRF-Token": token})

    assert without_token.status_code == 403
    assert done.status_code == 200
    result = done.get_json()
    assert {i["value"] for i in result["contact"]["identities"]} == {EMAIL, PHONE}
    assert result["merge"]["agent"] == {"id": agent.id, "name": "Lin Agent"}
    assert result["merge"]["merged_identities"] == [{"kind": "phone", "value": PHONE}]
    assert result["merge"]["details"]["conversation_ids"] == [grace["whatsapp_conversation"]]
    assert (again.status_code, again.get_json()["error"]["code"]) == (409, "already_merged")
    assert (itself.status_code, itself.get_json()["error"]["code"]) == (409, "same_contact")
    assert (edit_gone.status_code, edit_gone.get_json()["error"]["code"]) == (409, "contact_merged")

    profile = client.get(f"/api/v1/contacts/{kept}").get_json()
    assert grace["whatsapp_conversation"] in [item["id"] for item in profile["conversations"]["items"]]
    assert [m["merged_contact_id"] for m in profile["merges"]] == [merged]
    gone = client.get(f"/api/v1/contacts/{merged}").get_json()
    assert (gone["merged_into_id"], gone["identities"], gone["conversations"]["items"]) == (kept, [], [])
    conversation = client.get(f"/api/v1/conversations/{grace['whatsapp_conversation']}").get_json()
    assert conversation["contact"]["id"] == kept
    assert conversation["activities"][-1]["action"] == "contact_merged"
    with state.session_factory() as session:
        assert session.scalar(select(func.count()).select_from(ContactMerge)) == 1


def test_two_email_contacts_cannot_merge_422(app, state, grace, email_channel, bearer):
    other = contact_of(state, receive_mail(state, email_channel.id, "g.hopper@work.example", "hi").conversation_id)

    response = app.test_client().post(
        f"/api/v1/contacts/{grace['email_contact']}/merge", json={"other_id": other}, headers=bearer
    )

    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "address_kind_taken"
    assert "g.hopper@work.example" in response.get_json()["error"]["message"]


@pytest.mark.parametrize("body", [{"other_id": "2"}, {"other_id": True}, {"other_id": 0}, {}, "2"])
def test_merge_needs_an_other_id(app, grace, bearer, body):
    response = app.test_client().post(f"/api/v1/contacts/{grace['email_contact']}/merge", json=body, headers=bearer)

    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid"


def test_cleared_name_returns_to_the_profile_name(app, state, whatsapp_channel, bearer):
    client = app.test_client()
    post_inbound(client, whatsapp_channel, "Where is my order?")  # the profile name is Grace
    with state.session_factory() as session:
        contact_id = session.scalar(select(Contact.id))
    path = f"/api/v1/contacts/{contact_id}"

    renamed = client.patch(path, json={"name": "Grace from Leeds"}, headers=bearer)
    cleared = client.patch(path, json={"name": ""}, headers=bearer)

    assert renamed.get_json()["name"] == "Grace from Leeds"
    assert cleared.get_json() == {"id": contact_id, "name": "Grace", "name_set_by_agent": False}
    assert client.get(path, headers=bearer).get_json()["name"] == "Grace"


def test_cleared_name_without_a_named_message_is_empty(app, grace, bearer):
    # The stored payload of this WhatsApp message carries no profile name.
    path = f"/api/v1/contacts/{grace['phone_contact']}"
    app.test_client().patch(path, json={"name": "Grace H."}, headers=bearer)

    cleared = app.test_client().patch(path, json={"name": None}, headers=bearer)

    assert cleared.get_json() == {"id": grace["phone_contact"], "name": None, "name_set_by_agent": False}
