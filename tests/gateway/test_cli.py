"""The switchboard command line, run through click's test runner on a real database."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from urllib.parse import urlencode

import pytest
import requests
from click.testing import CliRunner
from sqlalchemy import func, select

from gateway.cli import main
from gateway.config import Config, ConfigError
from gateway.reprocess import parse_raw
from gateway.simulate import build_message_form
from inbox.channel_config import _ADDABLE_EMAIL_SETTINGS, _ADDABLE_META_SETTINGS, _ADDABLE_TWILIO_SETTINGS
from inbox.ingest import ingest_message, record_failed_payload
from inbox.models import Message, RawPayload
from tests.support.processes import ServiceProcess, free_port, service_environment

SID = "AC" + "1" * 32


@pytest.fixture
def run(database_url, tmp_path):
    runner = CliRunner()
    env = {"SWITCHBOARD_DATABASE_URL": database_url, "SWITCHBOARD_INSTANCE_DIR": str(tmp_path)}

    def invoke(*args: str, input: str | None = None):
        return runner.invoke(main, list(args), env=env, input=input, catch_exceptions=False)

    return invoke


def test_agent_create_and_duplicate(run):
    created = run("agent", "create", "--email", "Lee@Example.com", "--name", "Lee", "--password", "long enough pw")
    duplicate = run("agent", "create", "--email", "lee@example.com", "--name", "Lee", "--password", "long enough pw")

    assert created.exit_code == 0
    assert "Created agent Lee <lee@example.com>" in created.output
    assert duplicate.exit_code == 1
    assert "already exists" in duplicate.output


def test_agent_create_checks_fields_before_the_prompt(run):
    run("agent", "create", "--email", "lee@example.com", "--name", "Lee", "--password", "long enough pw")

    unnamed = run("agent", "create", "--email", "ann@example.com", "--name", " ", input="")
    duplicate = run("agent", "create", "--email", "LEE@example.com", "--name", "Lee", input="")

    assert unnamed.exit_code == 1
    assert "The name is empty." in unnamed.output
    assert "Password" not in unnamed.output
    assert duplicate.exit_code == 1
    assert "already exists" in duplicate.output
    assert "Password" not in duplicate.output


def test_agent_password_of_spaces_is_rejected(run):
    result = run("agent", "create", "--email", "a@example.com", "--name", "A", "--password", " " * 12)
    assert result.exit_code == 1
    assert "at least 10 characters" in result.output


def test_agent_password_change(run):
    run("agent", "create", "--email", "a@example.com", "--name", "A", "--password", "first password")
    changed = run("agent", "password", "--email", "a@example.com", "--password", "second password")
    unknown = run("agent", "password", "--email", "b@example.com", "--password", "second password")

    assert changed.exit_code == 0
    assert unknown.exit_code == 1
    assert "No agent with email b@example.com" in unknown.output


def test_whatsapp_channel_needs_token_and_sid(run):
    empty_token = run("channel", "add", "whatsapp", "--name", "W", "--number", "+14155238886",
                      "--account-sid", SID, "--auth-token", "")
    bad_sid = run("channel", "add", "whatsapp", "--name", "W", "--number", "+14155238886",
                  "--account-sid", "AC123", "--auth-token", "token")
    bad_number = run("channel", "add", "whatsapp", "--name", "W", "--number", "12",
                     "--account-sid", SID, "--auth-token", "token")

    assert empty_token.exit_code == 1
    assert "auth token is missing" in empty_token.output
    assert bad_sid.exit_code == 1
    assert "Account SID" in bad_sid.output
    assert bad_number.exit_code == 1


def test_whatsapp_number_is_normalised_and_unique(run):
    first = run("channel", "add", "whatsapp", "--name", "W", "--number", "whatsapp:+1 (415) 523-8886",
                "--account-sid", SID, "--auth-token", "token")
    again = run("channel", "add", "whatsapp", "--name", "W2", "--number", "+14155238886",
                "--account-sid", SID, "--auth-token", "token")

    assert first.exit_code == 0
    assert "<+14155238886>" in first.output
    assert "/webhooks/twilio/1/messages" in first.output
    assert again.exit_code == 1
    assert "already uses +14155238886" in again.output


def test_email_channel_validates_address_and_port(run):
    common = ["--imap-host", "imap.example.com", "--imap-username", "u", "--imap-password", "p",
              "--smtp-host", "smtp.example.com"]
    bad_address = run("channel", "add", "email", "--name", "E", "--address", "not-an-address", *common)
    bad_port = run("channel", "add", "email", "--name", "E", "--address", "s@example.com",
                   "--imap-port", "99999", *common)

    assert bad_address.exit_code == 1
    assert "not a valid email address" in bad_address.output
    assert bad_port.exit_code == 2
    assert "99999" in bad_port.output


def test_email_address_checked_before_the_prompt(run):
    result = run("channel", "add", "email", "--name", "E", "--address", "not-an-address", "--imap-host", "imap.example.com",
                 "--imap-username", "u", "--smtp-host", "smtp.example.com", input="")

    assert result.exit_code == 1
    assert "not a valid email address" in result.output
    assert "password" not in result.output.lower()


def test_email_channel_without_smtp_login(run, state):
    from inbox.channel_config import list_channels

    result = run("channel", "add", "email", "--name", "E", "--address", "s@example.com",
                 "--imap-host", "imap.example.com", "--imap-username", "u", "--imap-password", "p",
                 "--smtp-host", "relay.example.com", "--smtp-username", "", "--smtp-security", "none")

    assert result.exit_code == 0
    with state.session_factory() as session:
        (channel,) = list_channels(session)
        assert channel.settings["smtp_username"] == ""
        assert channel.settings["smtp_password"] is None


def test_channel_list_disable_enable(run):
    run("channel", "add", "whatsapp", "--name", "W", "--number", "+14155238886",
        "--account-sid", SID, "--auth-token", "token")

    disabled = run("channel", "disable", "1")
    listing = run("channel", "list")
    enabled = run("channel", "enable", "1")
    missing = run("channel", "enable", "7")

    assert disabled.exit_code == 0
    assert listing.output.splitlines()[0].startswith("ID\tKIND\tSTATE")
    assert "\twhatsapp\tdisabled\tW\t+14155238886\t-\t-" in listing.output
    assert enabled.exit_code == 0
    assert missing.exit_code == 1
    assert "Channel 7 not found" in missing.output


def test_simulate_without_channel_explains(run):
    result = run("simulate", "whatsapp", "--from", "+15551230000", "hello")
    assert result.exit_code == 1
    assert "No WhatsApp channel found" in result.output


def test_simulate_with_server_down_explains(run):
    run("channel", "add", "whatsapp", "--name", "W", "--number", "+14155238886",
        "--account-sid", SID, "--auth-token", "token")
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]

    result = run("simulate", "whatsapp", "--url", f"http://127.0.0.1:{port}", "--from", "+15551230000", "hello")

    assert result.exit_code == 1
    assert "Cannot connect to Switchboard" in result.output
    assert "SWITCHBOARD_PORT" in result.output


def test_simulate_on_disabled_channel_explains(run):
    run("channel", "add", "whatsapp", "--name", "W", "--number", "+14155238886",
        "--account-sid", SID, "--auth-token", "token")
    run("channel", "disable", "1")
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]

    result = run("simulate", "whatsapp", "--url", f"http://127.0.0.1:{port}", "--from", "+15551230000", "hello")

    assert result.exit_code == 1
    assert "Channel 1 (W) is disabled" in result.output
    assert "switchboard channel enable 1" in result.output


def test_simulate_posts_to_live_server(run, live_server, state):
    from sqlalchemy import select

    from inbox.models import Message

    run("channel", "add", "whatsapp", "--name", "W", "--number", "+14155238886",
        "--account-sid", SID, "--auth-token", "token")

    result = run("simulate", "whatsapp", "--url", live_server.url, "--from", "+15551230000",
                 "--name", "Grace", "Is my order late?")

    assert result.exit_code == 0, result.output
    live_server.wait_until_ingested()
    with state.session_factory() as session:
        assert session.scalar(select(Message.text)) == "Is my order late?"


def test_run_on_busy_port_fails_clearly(run):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        result = run("run", "--port", str(busy.getsockname()[1]))

    assert result.exit_code == 1
    assert "Cannot listen on 127.0.0.1" in result.output
    assert "running at" not in result.output


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("SWITCHBOARD_LOG_LEVEL", "verbose", "use one of DEBUG"),
        ("SWITCHBOARD_PORT", "abc", "expected a whole number"),
        ("SWITCHBOARD_PORT", "70000", "port from 1 to 65535"),
        ("SWITCHBOARD_PUBLIC_URL", "support.example.com", "without a path"),
        ("SWITCHBOARD_PUBLIC_URL", "https://support.example.com/app", "without a path"),
        ("SWITCHBOARD_OUTBOX_CONCURRENCY", "0", "from 1 to 32"),
        ("SWITCHBOARD_OUTBOX_CONCURRENCY", "-4", "from 1 to 32"),
        ("SWITCHBOARD_OUTBOX_CONCURRENCY", "4.5", "expected a whole number"),
        ("SWITCHBOARD_TWILIO_TIMEOUT", "0", "from 1 to 300"),
        ("SWITCHBOARD_TWILIO_TIMEOUT", "0.001", "from 1 to 300"),
        ("SWITCHBOARD_TWILIO_TIMEOUT", "nan", "from 1 to 300"),
        ("SWITCHBOARD_TWILIO_TIMEOUT", "inf", "from 1 to 300"),
        ("SWITCHBOARD_OUTBOX_POLL_INTERVAL", "0", "from 0.1 to 3600"),
        ("SWITCHBOARD_OUTBOX_POLL_INTERVAL", "-1", "from 0.1 to 3600"),
        ("SWITCHBOARD_OUTBOX_POLL_INTERVAL", "nan", "from 0.1 to 3600"),
        ("SWITCHBOARD_OUTBOX_POLL_INTERVAL", "inf", "from 0.1 to 3600"),
        ("SWITCHBOARD_IMAP_POLL_INTERVAL", "inf", "from 0.1 to 3600"),
        ("SWITCHBOARD_WHATSAPP_SEND_RATE", "nan", "or 0 to send without pacing"),
        ("SWITCHBOARD_WHATSAPP_SEND_RATE", "inf", "or 0 to send without pacing"),
        ("SWITCHBOARD_WHATSAPP_SEND_RATE", "1e-20", "or 0 to send without pacing"),
    ],
)
def test_invalid_configuration_is_named(tmp_path, variable, value, message):
    environ = {"SWITCHBOARD_INSTANCE_DIR": str(tmp_path), variable: value}
    with pytest.raises(ConfigError, match=message):
        Config.from_env(environ)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("outbox_concurrency = 2.5", "OUTBOX_CONCURRENCY=2.5 is invalid: expected a whole number"),
        ("outbox_concurrency = true", "OUTBOX_CONCURRENCY=True is invalid: expected a whole number"),
        ("twilio_timeout = true", "TWILIO_TIMEOUT=True is invalid: expected a number"),
    ],
)
def test_configuration_file_value_of_wrong_type(tmp_path, line, message):
    config_file = tmp_path / "switchboard.toml"
    config_file.write_text(line + "\n")
    environ = {"SWITCHBOARD_CONFIG": str(config_file), "SWITCHBOARD_INSTANCE_DIR": str(tmp_path)}

    with pytest.raises(ConfigError, match=message):
        Config.from_env(environ)


def test_configuration_file_and_environment(tmp_path):
    config_file = tmp_path / "switchboard.toml"
    config_file.write_text('port = 6001\npublic_url = "https://support.example.com"\n')
    environ = {"SWITCHBOARD_CONFIG": str(config_file), "SWITCHBOARD_PORT": "6002",
               "SWITCHBOARD_INSTANCE_DIR": str(tmp_path)}

    config = Config.from_env(environ)

    assert config.port == 6002
    assert config.public_url == "https://support.example.com"
    assert config.secure_cookies is True
    assert config.database_url.startswith("sqlite:///")
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


def test_channel_set_fixes_a_wrong_setting(run, state, database_url):
    added = run("channel", "add", "email", "--name", "Shop", "--address", "shop@example.com",
                "--imap-host", "imap.example.com", "--imap-username", "shop", "--imap-password", "wrong",
                "--smtp-host", "smtp.example.com")
    assert added.exit_code == 0, added.output

    changed = run("channel", "set", "1", "imap_password=-", "smtp_port=465", "smtp_security=ssl",
                  input="right-password\n")

    assert changed.exit_code == 0, changed.output
    assert "imap_password = (hidden)" in changed.output
    assert "right-password" not in changed.output
    assert "smtp_port = 465" in changed.output
    from inbox.models import Channel

    with state.session_factory() as session:
        settings = session.get(Channel, 1).settings
    assert settings["imap_password"] == "right-password"
    assert settings["smtp_port"] == 465
    assert settings["smtp_security"] == "ssl"


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        ("smtp_port=abc", "must be a whole number"),
        ("smtp_security=tls", "starttls, ssl or none"),
        ("colour=blue", "Unknown setting 'colour'"),
        ("imap_sll=false", "Did you mean imap_ssl?"),
        ("nokey", "is not KEY=VALUE"),
        ("imap_folders=x", "cannot be changed with this command"),
    ],
)
def test_channel_set_rejects_bad_values(run, assignment, message):
    run("channel", "add", "email", "--name", "Shop", "--address", "shop@example.com",
        "--imap-host", "imap.example.com", "--imap-username", "shop", "--imap-password", "secret",
        "--smtp-host", "smtp.example.com")

    result = run("channel", "set", "1", assignment)

    assert result.exit_code != 0
    assert message in result.output


def test_whatsapp_rejects_email_settings(run):
    run("channel", "add", "whatsapp", "--name", "W", "--number", "+14155238886",
        "--account-sid", SID, "--auth-token", "token")

    result = run("channel", "set", "1", "imap_host=imap.example.com")

    assert result.exit_code != 0
    assert "Unknown setting 'imap_host' for this whatsapp channel" in result.output
    assert "auth_token" in result.output


def test_agent_password_unknown_email_asks_nothing(run):
    unknown = run("agent", "password", "--email", "nobody@example.com", input="")

    assert unknown.exit_code == 1
    assert "No agent with email nobody@example.com" in unknown.output
    assert "New password" not in unknown.output


def test_agent_password_prompts_for_known_agent(run):
    run("agent", "create", "--email", "a@example.com", "--name", "A", "--password", "first password")
    changed = run("agent", "password", "--email", "a@example.com", input="second password\nsecond password\n")

    assert changed.exit_code == 0
    assert "New password" in changed.output
    assert "Password of A <a@example.com> changed." in changed.output


def test_worker_lowers_its_priority(database_url, tmp_path):
    env = service_environment(database_url=database_url, instance_dir=str(tmp_path), worker_nice="7")
    worker = ServiceProcess("worker", ["worker"], env, tmp_path).start()
    try:
        worker.wait_for_output("Switchboard worker running")
        expected = min(19, os.getpriority(os.PRIO_PROCESS, 0) + 7)
        assert os.getpriority(os.PRIO_PROCESS, worker.process.pid) == expected
        assert "ignoring unknown environment variables" not in worker.output()
    finally:
        worker.stop()


# `make run` installs the package without extras, so these must not be needed on SQLite.
OPTIONAL_PACKAGES = ("psycopg", "psycopg_binary", "redis", "pytest", "playwright", "hypothesis", "aiosmtpd")
RUN_WITHOUT_EXTRAS = """
import sys
for name in {packages!r}:
    sys.modules[name] = None  # makes `import name` raise ImportError
import importlib, pkgutil
import channels, gateway, inbox
for package in (channels, gateway, inbox):
    for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        importlib.import_module(module.name)
from gateway.cli import main
sys.argv = ["switchboard", "run", "--port", "{port}"]
main()
"""


def test_run_needs_no_optional_package(tmp_path):
    port = free_port()
    env = service_environment(database_url=f"sqlite:///{tmp_path / 'switchboard.db'}", instance_dir=str(tmp_path))
    script = RUN_WITHOUT_EXTRAS.format(packages=OPTIONAL_PACKAGES, port=port)
    log_path = tmp_path / "run.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while "Switchboard is running" not in log_path.read_text(errors="replace"):
            assert process.poll() is None, log_path.read_text(errors="replace")
            assert time.monotonic() < deadline, log_path.read_text(errors="replace")
            time.sleep(0.1)
        assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
    finally:
        process.terminate()
        exit_code = process.wait(15)

    output = log_path.read_text(errors="replace")
    assert exit_code == 0, output
    assert "Traceback" not in output


def test_failed_payload_listed_and_reprocessed(run, state, whatsapp_channel):
    form = build_message_form(whatsapp_channel, "+15551230000", "Where is my order?", "Grace")
    with state.session_factory() as session:
        payload_id = record_failed_payload(
            session, whatsapp_channel.id, urlencode(form).encode(), "twilio-form", "database was down"
        )
        received_at = session.scalar(select(RawPayload.received_at).where(RawPayload.id == payload_id))

    listed = run("payloads", "list")
    reprocessed = run("payloads", "reprocess", str(payload_id))
    again = run("payloads", "reprocess", str(payload_id))

    assert listed.exit_code == 0
    assert f"{payload_id}\t{whatsapp_channel.id}\ttwilio-form\t" in listed.output
    assert listed.output.rstrip().endswith("database was down")
    assert reprocessed.exit_code == 0
    assert f"Payload {payload_id} imported as message 1 in conversation 1." in reprocessed.output
    assert run("payloads", "list").output.strip() == "No failed payloads."
    assert again.exit_code == 1
    assert f"No failed payload {payload_id}." in again.output
    # The message keeps the payload's row, now processed, with the time it was received.
    with state.session_factory() as session:
        assert session.scalar(select(Message.raw_payload_id)) == payload_id
        payload = session.get(RawPayload, payload_id)
        assert (payload.status, payload.error, payload.received_at) == ("processed", None, received_at)


def test_reprocessed_duplicate_drops_failed_payload(run, state, whatsapp_channel):
    form = build_message_form(whatsapp_channel, "+15551230000", "Where is my order?", "Grace")
    # The same message arrived again with one more parameter, and that copy was stored.
    stored_copy = {**form, "AddedParameter": "1"}
    with state.session_factory() as session:
        payload_id = record_failed_payload(
            session, whatsapp_channel.id, urlencode(form).encode(), "twilio-form", "database was down"
        )
        ingest_message(session, whatsapp_channel.id, parse_raw("twilio-form", urlencode(stored_copy).encode()))

    reprocessed = run("payloads", "reprocess", str(payload_id))

    assert reprocessed.exit_code == 0, reprocessed.output
    with state.session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Message)) == 1
        assert session.get(RawPayload, payload_id) is None
        assert session.scalars(select(RawPayload.status)).all() == ["processed"]


def test_channel_set_help_lists_every_key(run):
    help_words = set(run("channel", "set", "--help").output.split())

    assert _ADDABLE_EMAIL_SETTINGS | _ADDABLE_META_SETTINGS | _ADDABLE_TWILIO_SETTINGS <= help_words
