"""The agent commands of the command line, and the audit rows that its changes write."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from inbox.db import make_engine, make_session_factory
from inbox.models import Agent, AgentSession, AuditEvent
from tests.gateway.test_cli import SID, run  # noqa: F401 - run is the command line fixture


@pytest.fixture
def database(database_url):
    engine = make_engine(database_url)
    yield make_session_factory(engine)
    engine.dispose()


def _audit(database) -> list[AuditEvent]:
    with database() as session:
        return list(session.scalars(select(AuditEvent).order_by(AuditEvent.id)))


def test_agent_list_shows_role_state_and_last_seen(run):
    run("agent", "create", "--email", "lee@example.com", "--name", "Lee", "--role", "manager", "--password", "long enough pw")
    run("agent", "create", "--email", "kim@example.com", "--name", "Kim", "--password", "long enough pw")
    run("agent", "disable", "kim@example.com")

    result = run("agent", "list")

    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0] == "ID\tEMAIL\tNAME\tROLE\tSTATE\tLAST SEEN"
    assert lines[1].split("\t")[1:] == ["kim@example.com", "Kim", "agent", "disabled", "never"]
    assert lines[2].split("\t")[1:] == ["lee@example.com", "Lee", "manager", "active", "never"]


def test_agent_list_when_empty(run):
    result = run("agent", "list")
    assert result.exit_code == 0
    assert "No agents yet" in result.output


def test_agent_disable_and_enable(run, database):
    run("agent", "create", "--email", "kim@example.com", "--name", "Kim", "--password", "long enough pw")
    with database() as session:
        from inbox.agents import start_session

        start_session(session, session.scalar(select(Agent)))
        session.commit()

    disabled = run("agent", "disable", "Kim@Example.com")
    again = run("agent", "disable", "kim@example.com")
    enabled = run("agent", "enable", "kim@example.com")
    unknown = run("agent", "disable", "nobody@example.com")

    assert disabled.exit_code == 0
    assert "Kim <kim@example.com> is disabled." in disabled.output
    # Without Redis the running service closes the live connections at its periodic check.
    assert "Their live connections close within 30 seconds" in disabled.output
    assert "live connections" not in enabled.output
    assert again.exit_code == 0
    assert "is enabled" in enabled.output
    assert unknown.exit_code == 1
    assert "No agent with email nobody@example.com" in unknown.output
    with database() as session:
        assert session.scalar(select(Agent)).is_active is True
        assert session.scalar(select(AgentSession)).revoked_at is not None
    assert [row.action for row in _audit(database)] == ["agent.created", "agent.disabled", "agent.enabled"]


def test_last_admin_cannot_be_disabled(run):
    run("agent", "create", "--email", "root@example.com", "--name", "Root", "--role", "admin", "--password", "long enough pw")
    result = run("agent", "disable", "root@example.com")
    assert result.exit_code == 1
    assert "only active admin" in result.output


def test_command_line_changes_are_logged_without_secrets(run, database):
    run("agent", "create", "--email", "lee@example.com", "--name", "Lee", "--password", "first password 1")
    run("agent", "password", "--email", "lee@example.com", "--password", "second password 2")
    token = run("agent", "token", "--email", "lee@example.com", "--name", "ci").output.strip()
    run("channel", "add", "whatsapp", "--name", "W", "--number", "+14155238886", "--account-sid", SID,
        "--auth-token", "twilio secret 1")
    run("channel", "set", "1", "auth_token=twilio secret 2")
    run("channel", "disable", "1")
    run("channel", "enable", "1")

    rows = _audit(database)

    assert [row.action for row in rows] == [
        "agent.created", "agent.password_reset", "token.created", "channel.added",
        "channel.changed", "channel.disabled", "channel.enabled",
    ]
    assert {row.actor_label for row in rows} == {"command line"}
    assert all(row.actor_id is None for row in rows)
    assert rows[4].details == {"auth_token": {"changed": True}}
    logged = json.dumps([row.details for row in rows])
    for secret in ("first password 1", "second password 2", token, "twilio secret"):
        assert secret not in logged


def test_token_for_unknown_agent_fails(run):
    result = run("agent", "token", "--email", "ghost@example.com")
    assert result.exit_code == 1
    assert "No agent with email ghost@example.com" in result.output
