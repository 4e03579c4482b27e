"""Shared fixtures: a migrated database per test, the app, a live server, agents, channels.

The suite runs on SQLite by default. With SWITCHBOARD_TEST_DATABASE_URL set to a PostgreSQL
URL it runs there instead: the schema comes from the Alembic migrations once per run, and
every test starts from empty tables.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import socketio
import websocket
from sqlalchemy import inspect, text
from sqlalchemy.engine import make_url

from gateway import Switchboard, create_app, get_state
from gateway.config import Config
from gateway.database import upgrade_database
from gateway.realtime import stop_presence
from inbox.agents import create_agent, create_api_token
from inbox.channel_config import add_channel
from inbox.db import make_engine
from inbox.models import Agent, Base, Channel
from tests.support.components import require
from tests.support.live import LiveServer

AGENT_PASSWORD = "correct horse battery"
TWILIO_ACCOUNT_SID = "AC" + "0" * 32
TWILIO_AUTH_TOKEN = "test-auth-token-0123456789abcdef"
WHATSAPP_NUMBER = "+14155238886"


def _postgres_url() -> str | None:
    url = os.environ.get("SWITCHBOARD_TEST_DATABASE_URL")
    if not url:
        return None
    # Each pytest-xdist worker drops and creates its own database.
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker:
        parsed = make_url(url)
        url = parsed.set(database=f"{parsed.database}_{worker}").render_as_string(hide_password=False)
    return url


@pytest.fixture(scope="session", autouse=True)
def prompt_socketio_disconnects() -> Iterator[None]:
    """Let the tests' python-socketio clients disconnect without a three-second wait.

    On disconnect the client sends its WebSocket close frame and then waits, with
    websocket-client's default timeout of 3 s, for the server's close frame. But the
    client's reader thread has already taken that frame, so every disconnect waited
    out the timeout. The server has its close frame by then; the wait adds nothing.
    """
    close = websocket.WebSocket.close

    def close_without_waiting(self, status=websocket.STATUS_NORMAL, reason=b"", timeout=3):
        close(self, status, reason, timeout=0)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(websocket.WebSocket, "close", close_without_waiting)
        yield


@pytest.fixture(scope="session", autouse=True)
def patient_socketio_connects() -> Iterator[None]:
    """Give the tests' python-socketio clients 10 seconds, not 1, to finish connecting.

    ``Client.connect`` waits ``wait_timeout`` seconds for the server's response to the namespace
    connect, and then fails with "Unexpected connection error". On two busy cores the
    server's connect handler (authentication, presence, replay of missed events) once took
    longer than the default second. A rejected connection still fails at once.
    """
    connect = socketio.Client.connect

    def connect_patiently(self, *args, wait_timeout=10, **kwargs):
        return connect(self, *args, wait_timeout=wait_timeout, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socketio.Client, "connect", connect_patiently)
        yield


@pytest.fixture(scope="session")
def migrated_template(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Return a database URL whose schema the Alembic migrations created, once per run."""
    postgres = _postgres_url()
    if postgres:
        url = make_url(postgres)
        admin = make_engine(url.set(database="postgres").render_as_string(hide_password=False),
                            isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)'))
                connection.execute(text(f'CREATE DATABASE "{url.database}"'))
        except Exception as error:  # noqa: BLE001 - report any connection problem the same way
            require(False, f"PostgreSQL at {url.host}:{url.port} is not reachable: {error}")
        finally:
            admin.dispose()
        engine = make_engine(postgres)
        upgrade_database(engine)
        engine.dispose()
        return postgres

    path = tmp_path_factory.mktemp("db") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade_database(engine)
    engine.dispose()
    return f"sqlite:///{path}"


@pytest.fixture
def database_url(migrated_template: str, tmp_path: Path) -> str:
    """Return the URL of an empty, migrated database for one test."""
    if migrated_template.startswith("sqlite"):
        copy = tmp_path / "switchboard.db"
        shutil.copy(make_url(migrated_template).database, copy)
        return f"sqlite:///{copy}"

    engine = make_engine(migrated_template)
    tables = [t for t in inspect(engine).get_table_names() if t != "alembic_version"]
    assert set(tables) == set(Base.metadata.tables)
    with engine.begin() as connection:
        # A TRUNCATE of all the tables took about 50 ms per test, so only tables with rows get one.
        used = connection.execute(text(" UNION ALL ".join(
            f"SELECT '{table}' WHERE EXISTS (SELECT 1 FROM {table})" for table in tables
        ))).scalars().all()
        if used:
            connection.execute(text(f"TRUNCATE {', '.join(used)} CASCADE"))
        # Every sequence starts again at 1, also that of a table whose rows a test deleted.
        connection.execute(text(
            "SELECT setval(c.oid, 1, false) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.relkind = 'S' AND n.nspname = current_schema()"
        ))
    engine.dispose()
    return migrated_template


@pytest.fixture
def config(database_url: str, tmp_path: Path) -> Config:
    return Config(
        database_url=database_url,
        secret_key="test-secret-key",
        instance_dir=str(tmp_path / "instance"),
        outbox_poll_interval=0.2,
        imap_poll_interval=1.0,
    )


@pytest.fixture
def app(config: Config) -> Iterator:
    app = create_app(config)
    app.config["TESTING"] = True
    yield app
    stop_presence(app)
    get_state(app).engine.dispose()


@pytest.fixture
def state(app) -> Switchboard:
    return get_state(app)


@pytest.fixture
def live_server(app) -> Iterator[LiveServer]:
    with LiveServer(app) as server:
        yield server


@pytest.fixture
def agent(state: Switchboard) -> Agent:
    with state.session_factory() as session:
        created = create_agent(session, "ada@example.com", "Ada Agent", AGENT_PASSWORD)
        session.commit()
        return created


@pytest.fixture
def api_token(state: Switchboard, agent: Agent) -> str:
    with state.session_factory() as session:
        token = create_api_token(session, session.get(Agent, agent.id), "tests")
        session.commit()
        return token


@pytest.fixture
def whatsapp_channel(state: Switchboard) -> Channel:
    with state.session_factory() as session:
        channel = add_channel(
            session,
            "whatsapp",
            "WhatsApp support",
            WHATSAPP_NUMBER,
            {"account_sid": TWILIO_ACCOUNT_SID, "auth_token": TWILIO_AUTH_TOKEN},
        )
        session.commit()
        return channel


def login(client, email: str = "ada@example.com", password: str = AGENT_PASSWORD) -> str:
    """Sign the Flask test client in and return the session's CSRF token."""
    client.get("/login")
    with client.session_transaction() as flask_session:
        token = flask_session["csrf_token"]
    response = client.post("/login", data={"email": email, "password": password, "csrf_token": token})
    assert response.status_code == 302, response.data
    with client.session_transaction() as flask_session:
        return flask_session["csrf_token"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In the PostgreSQL pass, run only the tests that use the database.

    The others (parsers, senders, the corpus without a database) ran in the SQLite pass
    already and would only repeat it.
    """
    if not _postgres_url():
        return
    database_tests = [
        item for item in items
        if {"database_url", "migrated_template"} & set(getattr(item, "fixturenames", ()))
    ]
    if len(database_tests) < len(items):
        config.hook.pytest_deselected(items=[item for item in items if item not in database_tests])
        items[:] = database_tests
