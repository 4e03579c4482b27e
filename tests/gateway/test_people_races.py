"""Admin actions that race each other on PostgreSQL, where transactions run concurrently."""

from __future__ import annotations

import os
import threading

import pytest
from sqlalchemy import select

from inbox import agents as agents_module
from inbox.agents import create_agent, create_api_token
from inbox.models import Agent, Role
from tests.conftest import AGENT_PASSWORD

ON_POSTGRES = (os.environ.get("SWITCHBOARD_TEST_DATABASE_URL") or "").startswith("postgresql")
postgres_pass = pytest.mark.skipif(
    not ON_POSTGRES,
    reason="runs in the PostgreSQL pass (SWITCHBOARD_TEST_DATABASE_URL); SQLite runs one transaction at a time",
)


def _admin_with_token(state, email: str) -> tuple[int, str]:
    with state.session_factory() as session:
        admin = create_agent(session, email, email.split("@")[0].title(), AGENT_PASSWORD, Role.ADMIN.value)
        token = create_api_token(session, admin, "tests")
        session.commit()
        return admin.id, token


def _remove_admin(app, token: str, target_id: int, action: str) -> int:
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    if action == "demote":
        response = client.put(f"/api/v1/agents/{target_id}/role", json={"role": "agent"}, headers=headers)
    else:
        response = client.post(f"/api/v1/agents/{target_id}/disable", headers=headers)
    return response.status_code


@postgres_pass
@pytest.mark.parametrize("action", ["demote", "disable"])
def test_two_admins_removing_each_other_keep_one(app, state, monkeypatch, action):
    first_id, first_token = _admin_with_token(state, "ann@example.com")
    second_id, second_token = _admin_with_token(state, "bob@example.com")
    # Both requests have loaded their target and reach the admin count together, which is
    # the moment where counting without a lock let both of them succeed.
    barrier = threading.Barrier(2, timeout=20)
    lock_active_admins = agents_module._lock_active_admins

    def meet_then_lock(session):
        barrier.wait()
        return lock_active_admins(session)

    monkeypatch.setattr(agents_module, "_lock_active_admins", meet_then_lock)
    statuses: dict[str, int] = {}
    threads = [
        threading.Thread(target=lambda: statuses.update(first=_remove_admin(app, first_token, second_id, action))),
        threading.Thread(target=lambda: statuses.update(second=_remove_admin(app, second_token, first_id, action))),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert not any(thread.is_alive() for thread in threads)
    assert sorted(statuses.values()) == [200, 409]
    with state.session_factory() as session:
        active_admins = session.scalars(
            select(Agent.id).where(Agent.role == Role.ADMIN.value, Agent.is_active.is_(True))
        ).all()
    assert len(active_admins) == 1
