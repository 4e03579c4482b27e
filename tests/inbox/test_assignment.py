"""Automatic assignment within a team: round robin over online members below their capacity."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from inbox.activity import list_activities
from inbox.assignment import OnlineAgents, online_agent_ids, use_online_agents
from inbox.errors import InvalidInput, NotFound
from inbox.models import Agent, AgentPresence, Channel, Conversation, Team, utcnow
from inbox.presence import FRESH_FOR, publish_presence, shared_online_agent_ids
from inbox.teams import create_team, set_channel_default_team
from inbox.workflow import change_conversation, parse_changes
from tests.support.conversations import add_agent, receive


@pytest.fixture
def online(state) -> OnlineAgents:
    registry = OnlineAgents()
    use_online_agents(state.session_factory, registry)
    return registry


@pytest.fixture
def members(state) -> list[Agent]:
    return [
        add_agent(state, "amy@example.com", "Amy"),
        add_agent(state, "ben@example.com", "Ben"),
        add_agent(state, "cat@example.com", "Cat", capacity=1),
    ]


@pytest.fixture
def team_id(state, members, whatsapp_channel) -> int:
    with state.session_factory() as session:
        team = create_team(session, "Support", [agent.id for agent in members])
        set_channel_default_team(session, whatsapp_channel.id, team.id)
        session.commit()
        return team.id


def _assignee(state, conversation_id: int) -> int | None:
    with state.session_factory() as session:
        return session.get(Conversation, conversation_id).assignee_id


def _new_conversations(state, channel_id: int, count: int) -> list[int]:
    return [
        receive(state, channel_id, f"+1555000{index:04d}").conversation_id for index in range(count)
    ]


def test_online_agents_count_each_connection():
    online = OnlineAgents()
    online.connected(1)
    online.connected(1)
    online.connected(2)
    online.disconnected(1)
    assert online.ids() == {1, 2}
    online.disconnected(1)
    online.disconnected(2)
    online.disconnected(2)
    assert online.ids() == frozenset()


def test_session_without_presence_has_nobody_online(state):
    with state.session_factory() as session:
        assert online_agent_ids(session) == frozenset()


def test_round_robin_skips_offline_and_full_agents(state, online, members, team_id, whatsapp_channel):
    amy, ben, cat = members
    online.connected(amy.id)
    online.connected(cat.id)

    ids = _new_conversations(state, whatsapp_channel.id, 4)

    # Ben is offline. Cat takes one and is then full at her capacity of 1.
    assert [_assignee(state, conversation_id) for conversation_id in ids] == [amy.id, cat.id, amy.id, amy.id]
    with state.session_factory() as session:
        assert session.get(Team, team_id).last_assigned_agent_id == amy.id
        activity = list_activities(session, ids[0])
        assert [(row.action, row.agent_id) for row in activity] == [("team", None), ("assignee", None)]
        assert activity[1].details["automatic"] is True


def test_round_robin_continues_after_last_assigned(state, online, members, team_id, whatsapp_channel):
    amy, ben, cat = members
    for agent in members:
        online.connected(agent.id)

    ids = _new_conversations(state, whatsapp_channel.id, 4)

    assert [_assignee(state, conversation_id) for conversation_id in ids] == [amy.id, ben.id, cat.id, amy.id]


def test_resolving_frees_capacity(state, online, members, team_id, whatsapp_channel):
    amy, ben, cat = members
    online.connected(cat.id)
    first, second = _new_conversations(state, whatsapp_channel.id, 2)
    assert (_assignee(state, first), _assignee(state, second)) == (cat.id, None)

    with state.session_factory() as session:
        change_conversation(session, session.get(Agent, cat.id), first, parse_changes({"status": "resolved"}, utcnow()))
        session.commit()
    (third,) = _new_conversations(state, whatsapp_channel.id, 1)

    assert _assignee(state, third) == cat.id


def test_nobody_qualifies_keeps_team_queue(state, online, members, team_id, whatsapp_channel, published):
    (conversation_id,) = _new_conversations(state, whatsapp_channel.id, 1)

    with state.session_factory() as session:
        conversation = session.get(Conversation, conversation_id)
        assert (conversation.team_id, conversation.assignee_id) == (team_id, None)
    created = [event for event in published if event["type"] == "conversation.created"]
    assert created[0]["conversation"]["team"] == {"id": team_id, "name": "Support"}
    assert created[0]["conversation"]["assignee"] is None


def test_inactive_member_is_skipped(state, online, members, team_id, whatsapp_channel):
    amy, ben, cat = members
    online.connected(amy.id)
    online.connected(ben.id)
    with state.session_factory() as session:
        session.get(Agent, amy.id).is_active = False
        session.commit()

    (conversation_id,) = _new_conversations(state, whatsapp_channel.id, 1)

    assert _assignee(state, conversation_id) == ben.id


def test_channel_without_default_team_assigns_nobody(state, online, members, whatsapp_channel):
    online.connected(members[0].id)
    (conversation_id,) = _new_conversations(state, whatsapp_channel.id, 1)

    with state.session_factory() as session:
        conversation = session.get(Conversation, conversation_id)
        assert (conversation.team_id, conversation.assignee_id) == (None, None)


def test_existing_conversation_is_not_reassigned(state, online, members, team_id, whatsapp_channel):
    amy, ben, cat = members
    online.connected(amy.id)
    online.connected(ben.id)
    first = receive(state, whatsapp_channel.id, "+15550001111").conversation_id
    again = receive(state, whatsapp_channel.id, "+15550001111", "Still there?").conversation_id

    assert again == first
    assert _assignee(state, first) == amy.id


def test_auto_assign_on_request_uses_the_team(state, online, members, team_id, agent, whatsapp_channel):
    amy, ben, cat = members
    with state.session_factory() as session:
        set_channel_default_team(session, whatsapp_channel.id, None)
        session.commit()
    (conversation_id,) = _new_conversations(state, whatsapp_channel.id, 1)
    online.connected(ben.id)

    with state.session_factory() as session:
        actor = session.get(Agent, agent.id)
        changes = parse_changes({"team_id": team_id, "assignee_id": "auto"}, utcnow())
        conversation = change_conversation(session, actor, conversation_id, changes)
        session.commit()
        assert (conversation.team_id, conversation.assignee_id) == (team_id, ben.id)
        actions = [(row.action, row.agent_id) for row in list_activities(session, conversation_id)]
    assert actions == [("team", agent.id), ("assignee", agent.id)]


def test_default_team_setting_is_checked(state, whatsapp_channel):
    with state.session_factory() as session:
        with pytest.raises(NotFound):
            set_channel_default_team(session, whatsapp_channel.id, 99)
        with pytest.raises(InvalidInput):
            set_channel_default_team(session, whatsapp_channel.id, "Support")
        assert session.scalar(select(Channel.default_team_id)) is None


def test_worker_assigns_agent_online_elsewhere(state, members, team_id, whatsapp_channel):
    # No presence is bound to this process's sessions, as in a worker: only the rows that a
    # web process wrote tell who is online.
    amy = members[0]
    with state.session_factory() as session:
        publish_presence(session, "web-1", {amy.id: 1})

    conversation_id = receive(state, whatsapp_channel.id, "+15550001111").conversation_id

    assert _assignee(state, conversation_id) == amy.id


def test_stale_presence_counts_nobody(state, members, team_id, whatsapp_channel):
    with state.session_factory() as session:
        publish_presence(session, "web-1", {members[0].id: 1}, now=utcnow() - FRESH_FOR - timedelta(seconds=1))

    conversation_id = receive(state, whatsapp_channel.id, "+15550001111").conversation_id

    assert _assignee(state, conversation_id) is None


def test_presence_rows_replaced_per_process(state, members):
    amy, ben, cat = members
    with state.session_factory() as session:
        publish_presence(session, "web-1", {amy.id: 2, ben.id: 1})
        publish_presence(session, "web-2", {cat.id: 1})
        publish_presence(session, "web-1", {ben.id: 1})

        assert shared_online_agent_ids(session) == {ben.id, cat.id}
        assert session.scalars(select(AgentPresence.process_id).where(AgentPresence.agent_id == ben.id)).all() == ["web-1"]
