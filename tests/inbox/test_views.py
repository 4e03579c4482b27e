"""Filtered conversation lists with keyset pagination, and the counts of the inbox views."""

from __future__ import annotations

from datetime import timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from inbox.conversations import ConversationFilter, list_conversations, parse_filter
from inbox.errors import InvalidInput
from inbox.merge import merge_conversations
from inbox.models import Agent, Base, Conversation, utcnow
from inbox.search import is_model_object
from inbox.teams import create_label, create_team
from inbox.views import View, agent_views, count_views
from inbox.workflow import change_conversation, parse_changes
from tests.support.conversations import add_agent, receive


def _change(state, agent_id: int, conversation_id: int, body: dict) -> None:
    with state.session_factory() as session:
        change_conversation(session, session.get(Agent, agent_id), conversation_id, parse_changes(body, utcnow()))
        session.commit()


def _ids(state, where: ConversationFilter, limit: int = 50) -> list[int]:
    """Return the ids of every page, following next_cursor."""
    ids: list[int] = []
    cursor = None
    with state.session_factory() as session:
        while True:
            page = list_conversations(session, limit=limit, cursor=cursor, where=where)
            ids.extend(conversation.id for conversation in page.items)
            cursor = page.next_cursor
            if cursor is None:
                return ids


@pytest.fixture
def inbox(state, agent, whatsapp_channel) -> dict[str, int]:
    """Six conversations: two of Ada's (one urgent), one of Bob's, one pending, one snoozed,
    one resolved; Ada's urgent one and the pending one carry the label "VIP"."""
    bob = add_agent(state, "bob@example.com", "Bob Builder")
    ids = {
        name: receive(state, whatsapp_channel.id, f"+155512300{index:02d}").conversation_id
        for index, name in enumerate(["ada_urgent", "ada", "bob", "pending", "snoozed", "resolved"])
    }
    with state.session_factory() as session:
        create_label(session, "VIP")
        team = create_team(session, "Support", [agent.id, bob.id])
        session.commit()
        team_id = team.id
    _change(state, agent.id, ids["ada_urgent"], {"assignee_id": agent.id, "priority": "urgent", "add_labels": ["VIP"],
                                                 "team_id": team_id})
    _change(state, agent.id, ids["ada"], {"assignee_id": agent.id})
    _change(state, bob.id, ids["bob"], {"assignee_id": bob.id, "team_id": team_id})
    _change(state, agent.id, ids["pending"], {"status": "pending", "add_labels": ["VIP"]})
    _change(state, agent.id, ids["snoozed"], {"status": "snoozed",
                                                "snoozed_until": (utcnow() + timedelta(days=1)).isoformat()})
    _change(state, agent.id, ids["resolved"], {"status": "resolved"})
    return {**ids, "bob_id": bob.id, "team_id": team_id}


def test_filters_select_their_conversations(state, agent, whatsapp_channel, inbox):
    def ids(**args: str) -> set[int]:
        return set(_ids(state, parse_filter(args, agent.id)))

    assert ids(assignee="me") == {inbox["ada_urgent"], inbox["ada"]}
    assert ids(assignee=str(inbox["bob_id"])) == {inbox["bob"]}
    assert ids(assignee="unassigned", status="open") == set()
    assert ids(assignee="unassigned") == {inbox["pending"], inbox["snoozed"], inbox["resolved"]}
    assert ids(status="pending") == {inbox["pending"]}
    assert ids(priority="urgent") == {inbox["ada_urgent"]}
    assert ids(label="1") == {inbox["ada_urgent"], inbox["pending"]}
    assert ids(team=str(inbox["team_id"])) == {inbox["ada_urgent"], inbox["bob"]}
    conversations = {inbox[name] for name in ("ada_urgent", "ada", "bob", "pending", "snoozed", "resolved")}
    assert ids(channel=str(whatsapp_channel.id)) == conversations
    assert ids(channel=str(whatsapp_channel.id + 1)) == set()


def test_keyset_pagination_keeps_filter_and_order(state, agent, inbox):
    everything = _ids(state, ConversationFilter())
    assert everything == sorted(everything, reverse=True)  # one message each, newest first

    assert _ids(state, ConversationFilter(), limit=2) == everything
    assert _ids(state, ConversationFilter(assignee="unassigned"), limit=1) == [
        inbox["resolved"], inbox["snoozed"], inbox["pending"],
    ]


def test_closed_listed_only_by_status(state, agent, inbox):
    with state.session_factory() as session:
        conversation = session.get(Conversation, inbox["ada"])
        # A second conversation of the same contact, so the two can merge.
        twin = Conversation(channel_id=conversation.channel_id, contact_id=conversation.contact_id, last_message_at=utcnow())
        session.add(twin)
        session.commit()
        twin_id = twin.id
    with state.session_factory() as session:
        merge_conversations(session, session.get(Agent, agent.id), twin_id, inbox["ada"])
        session.commit()

    assert twin_id not in _ids(state, ConversationFilter())
    assert _ids(state, ConversationFilter(status="closed")) == [twin_id]


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ({"status": "done"}, "status"),
        ({"priority": "p1"}, "priority"),
        ({"assignee": "someone"}, "assignee"),
        ({"assignee": "-1"}, "assignee"),
        ({"team": "sales"}, "team"),
        ({"label": "٣"}, "label"),
        ({"channel": str(2**64)}, "channel"),
        ({"contact": "0"}, "contact"),
    ],
)
def test_invalid_filter_names_the_parameter(args, field):
    with pytest.raises(InvalidInput) as raised:
        parse_filter(args, 1)
    assert raised.value.field == field


def test_view_counts_match_the_lists(state, agent, inbox):
    with state.session_factory() as session:
        views = agent_views(session, agent.id)
        counted = {view["key"]: view["count"] for view in count_views(session, views)}
        where = {view.key: view.where for view in views}

    assert counted == {
        "mine": 2,
        "unassigned": 0,
        "all": 6,
        "status:open": 3,
        "status:pending": 1,
        "status:snoozed": 1,
        "status:resolved": 1,
        f"team:{inbox['team_id']}": 2,
    }
    for key, count in counted.items():
        assert len(_ids(state, where[key])) == count, key


def test_view_params_list_the_view(state, agent, inbox):
    with state.session_factory() as session:
        for view in agent_views(session, agent.id):
            assert parse_filter(view.params, agent.id) == view.where


def test_migrations_match_the_models(state):
    with state.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"include_name": is_model_object})
        assert compare_metadata(context, Base.metadata) == []


def test_view_counts_reject_other_filters(state):
    view = View("vip", "VIP", "label", ConversationFilter(label_id=1), {"label": "1"})
    with state.session_factory() as session:
        with pytest.raises(ValueError, match="status, assignee and team only"):
            count_views(session, [view])
