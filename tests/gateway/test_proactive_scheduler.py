"""The proactive scheduler: catch-up after downtime, leader election, no double send.

The PostgreSQL tests run in the suite's PostgreSQL pass (SWITCHBOARD_TEST_DATABASE_URL),
against separate processes and connections.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import replace
from datetime import timedelta

import pytest
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from sqlalchemy import func, select, text

from gateway import create_app, get_state
from gateway.scheduler import LEADER_LOCK_KEY, SWEEP_JOB_ID, ProactiveScheduler
from inbox.models import Agent, Message, OutboxItem, ProactiveSend, apscheduler_jobs, utcnow
from inbox.workflow import Changes, change_conversations
from tests.support.conversations import receive
from tests.support.proactive import add_template

ON_POSTGRES = (os.environ.get("SWITCHBOARD_TEST_DATABASE_URL") or "").startswith("postgresql")
postgres_pass = pytest.mark.skipif(not ON_POSTGRES, reason="runs in the PostgreSQL pass (SWITCHBOARD_TEST_DATABASE_URL)")


def wait_until(condition, timeout: float = 15.0) -> bool:
    """Poll ``condition`` until it is true or ``timeout`` seconds pass; return its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        threading.Event().wait(0.05)
    return condition()


@pytest.fixture
def fast_config(config):
    return replace(config, proactive_sweep_interval=60.0, scheduler_leader_retry=0.2, scheduler_misfire_grace=3600)


def start_scheduler(config, sweeps: list) -> tuple[ProactiveScheduler, object]:
    state = get_state(create_app(config))
    scheduler = ProactiveScheduler(state, threading.Event(), on_sweep=sweeps.append)
    scheduler.start()
    return scheduler, state


def test_downtime_gives_one_catch_up_run(fast_config):
    sweeps: list = []
    first, first_state = start_scheduler(fast_config, sweeps)
    assert wait_until(lambda: len(sweeps) == 1)
    first.stop()
    # Ten sweeps are missed while no scheduler runs: the stored next run lies ten minutes back.
    store = SQLAlchemyJobStore(engine=first_state.engine, tablename="apscheduler_jobs")
    job = store.lookup_job(SWEEP_JOB_ID)
    job.next_run_time = utcnow() - timedelta(minutes=10)
    store.update_job(job)
    first_state.engine.dispose()

    sweeps.clear()
    second, second_state = start_scheduler(fast_config, sweeps)
    try:
        assert wait_until(lambda: len(sweeps) >= 1)
        settled = not wait_until(lambda: len(sweeps) > 1, timeout=1.5)
        with second_state.session_factory() as session:
            next_run = session.scalar(select(apscheduler_jobs.c.next_run_time))
    finally:
        second.stop()
        second_state.engine.dispose()

    assert settled, f"{len(sweeps)} catch-up runs"
    assert len(sweeps) == 1
    assert next_run > utcnow().timestamp()


def test_sqlite_scheduler_leads_without_lock(fast_config):
    sweeps: list = []
    scheduler, state = start_scheduler(fast_config, sweeps)
    try:
        assert wait_until(scheduler.became_leader.is_set)
        assert scheduler.lock is None or scheduler.lock.held
        assert wait_until(lambda: len(sweeps) == 1)
    finally:
        scheduler.stop()
        state.engine.dispose()


@postgres_pass
def test_one_leader_and_failover(fast_config):
    sweeps_a: list = []
    sweeps_b: list = []
    leader, state_a = start_scheduler(fast_config, sweeps_a)
    assert wait_until(leader.became_leader.is_set)
    assert wait_until(lambda: len(sweeps_a) == 1)
    standby, state_b = start_scheduler(fast_config, sweeps_b)
    try:
        standby_led = wait_until(standby.became_leader.is_set, timeout=1.0)

        # The leader's database connection dies, as it does when its host dies.
        with state_b.engine.connect() as admin:
            admin.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND objid = :key"),
                {"key": LEADER_LOCK_KEY},
            )
        took_over = wait_until(standby.became_leader.is_set)
        old_leader_stepped_down = wait_until(lambda: not leader.is_leader)
    finally:
        leader.stop()
        standby.stop()
        state_a.engine.dispose()
        state_b.engine.dispose()

    assert standby_led is False
    assert took_over
    assert old_leader_stepped_down
    # The standby found the job stored by the old leader and keeps its schedule.
    assert sweeps_b == []


@postgres_pass
def test_two_sweeping_processes_send_once(state, config, agent, whatsapp_channel, tmp_path):
    add_template(state, "status_changed", {"to_status": "pending"})
    conversation_ids = [
        receive(state, whatsapp_channel.id, f"+1415555{index:04d}", "Any news?").conversation_id
        for index in range(40)
    ]
    with state.session_factory() as session:
        change_conversations(session, session.get(Agent, agent.id), conversation_ids, Changes(status="pending"))
        session.commit()
    now = (utcnow() + timedelta(seconds=1)).isoformat()

    command = [sys.executable, "-m", "tests.support.sweep_process", config.database_url, now, "3"]
    processes = [
        subprocess.Popen([*command, str(tmp_path / f"instance-{index}")], stdout=subprocess.PIPE, text=True)
        for index in range(2)
    ]
    outputs = [process.communicate(timeout=120)[0] for process in processes]

    queued = [json.loads(output.strip().splitlines()[-1])["queued"] for output in outputs]
    assert all(process.returncode == 0 for process in processes)
    assert sum(queued) == 40
    with state.session_factory() as session:
        assert session.scalar(select(func.count()).select_from(ProactiveSend)) == 40
        assert session.scalar(select(func.count()).select_from(Message).where(Message.automatic == "proactive")) == 40
        assert session.scalar(select(func.count()).select_from(OutboxItem)) == 40
