"""Canned responses: placeholder checks and rendering, and who may change which response."""

from __future__ import annotations

import pytest

from inbox.canned import (
    PlaceholderContext,
    check_placeholders,
    create_canned_response,
    delete_canned_response,
    list_canned_responses,
    render_placeholders,
    update_canned_response,
)
from inbox.errors import Forbidden, InvalidInput, NotFound
from inbox.models import Agent, Conversation, Role
from tests.support.conversations import add_agent, receive


@pytest.fixture
def context(state, agent, whatsapp_channel):
    conversation_id = receive(state, whatsapp_channel.id, "+15551230001").conversation_id
    session = state.session_factory()
    conversation = session.get(Conversation, conversation_id)
    conversation.contact.name = "Grace Hopper"
    yield PlaceholderContext(conversation, session.get(Agent, agent.id))
    session.close()


def test_placeholders_are_filled(context):
    body = "Hi {{ customer.first_name }}, {{agent.first_name}} here about {{ conversation.reference }} on {{ channel.name }}."

    assert render_placeholders(body, context) == (
        f"Hi Grace, Ada here about #{context.conversation.id} on WhatsApp support."
    )


def test_empty_value_takes_the_fallback(context):
    context.conversation.contact.name = None

    assert render_placeholders('Hi {{ customer.first_name | default("there") }},', context) == "Hi there,"
    assert render_placeholders("Hi {{ customer.first_name|default('you') }}!", context) == "Hi you!"
    assert render_placeholders("Hi {{ customer.name }}!", context) == "Hi !"


def test_values_are_inserted_verbatim_not_evaluated(context):
    context.conversation.contact.name = "{{ agent.email }} <b>x</b>"

    assert render_placeholders("{{ customer.name }}", context) == "{{ agent.email }} <b>x</b>"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("{{ customer.secret }}", "Unknown placeholder 'customer.secret'"),
        ("{{ customer.__class__ }}", "Unknown placeholder"),
        ("{{ range(10) }}", "is not a placeholder"),
        ("{% for x in y %}{% endfor %}{{ 1 + 1 }}", "is not a placeholder"),
        ('{{ customer.name | upper }}', "is not a placeholder"),
    ],
)
def test_invalid_placeholders_are_rejected(body, message):
    with pytest.raises(InvalidInput) as raised:
        check_placeholders(body)

    assert message in raised.value.message
    assert raised.value.field == "body"


def test_plain_text_and_known_placeholders_pass():
    check_placeholders("No placeholders at all { } {x}")
    check_placeholders('{{ agent.name }} {{ conversation.subject | default("your request") }}')


def test_agents_keep_personal_and_managers_shared(state, agent):
    manager = add_agent(state, "mia@example.com", "Mia Manager", Role.MANAGER.value)
    bob = add_agent(state, "bob@example.com", "Bob Builder")
    with state.session_factory() as session:
        ada, mia, bob = (session.get(Agent, a.id) for a in (agent, manager, bob))
        shared = create_canned_response(session, mia, "Refund", "We refunded {{ conversation.reference }}.", True)
        personal = create_canned_response(session, ada, "  My   sign-off ", "Cheers, {{ agent.first_name }}", False)
        session.commit()

        assert personal.title == "My sign-off"
        assert [r.title for r in list_canned_responses(session, ada)] == ["My sign-off", "Refund"]
        assert [r.title for r in list_canned_responses(session, bob)] == ["Refund"]
        with pytest.raises(Forbidden):
            create_canned_response(session, ada, "Shared", "text", True)
        with pytest.raises(Forbidden):
            update_canned_response(session, ada, shared.id, {"body": "changed"})
        with pytest.raises(Forbidden):
            delete_canned_response(session, bob, shared.id)
        with pytest.raises(NotFound):
            update_canned_response(session, bob, personal.id, {"body": "mine now"})
        with pytest.raises(NotFound):
            delete_canned_response(session, mia, personal.id)

        changed = update_canned_response(session, mia, shared.id, {"title": "Refund done"})
        assert (changed.title, changed.body) == ("Refund done", "We refunded {{ conversation.reference }}.")
        delete_canned_response(session, ada, personal.id)
        session.commit()
        assert [r.title for r in list_canned_responses(session, ada)] == ["Refund done"]


@pytest.mark.parametrize(
    ("title", "body", "shared", "field"),
    [
        ("", "text", False, "title"),
        ("x" * 81, "text", False, "title"),
        ("Title", "   ", False, "body"),
        ("Title", "x" * 5001, False, "body"),
        ("Title", "{{ nope }}", False, "body"),
        ("Title", "text", "yes", "shared"),
        (None, "text", False, "title"),
    ],
)
def test_invalid_fields_are_rejected(state, agent, title, body, shared, field):
    with state.session_factory() as session:
        with pytest.raises(InvalidInput) as raised:
            create_canned_response(session, session.get(Agent, agent.id), title, body, shared)

    assert raised.value.field == field


def test_unknown_update_field_is_rejected(state, agent):
    with state.session_factory() as session:
        ada = session.get(Agent, agent.id)
        response = create_canned_response(session, ada, "Hello", "Hello", False)
        with pytest.raises(InvalidInput) as raised:
            update_canned_response(session, ada, response.id, {"owner_id": 5})

    assert raised.value.field == "owner_id"
