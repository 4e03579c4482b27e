"""Folders of an email channel against a real Dovecot and SMTP server: several folders read
per channel (checkpoints, health, settings) and the copy of each reply in the Sent folder.

The Dovecot here separates folder levels with "/", so "Support/Ärger" is a valid name, sent
in modified UTF-7 on the wire. Each test works in folders of its own on the shared server.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from email.message import EmailMessage

import pytest
from click.testing import CliRunner

import gateway.workers
from sqlalchemy import func, select

from channels.email.imap import Checkpoint, FetchedMail, ImapReader
from gateway import Switchboard
from gateway.channel_settings import imap_settings
from gateway.cli import main
from gateway.workers import MailboxReader, OutboxDispatcher, Workers
from inbox.agents import create_agent, create_api_token
from inbox.channel_config import add_channel, update_email_folders
from inbox.models import Channel, Conversation, MailboxCheckpoint, Message, OutboxItem, RawPayload
from inbox.replies import create_reply
from tests.conftest import AGENT_PASSWORD, login
from tests.support.dovecot import SLASH_SEPARATOR_CONFIG, DovecotServer, copy_mail, read_folder
from tests.support.oauth_server import SCOPE, OAuthTestServer
from tests.support.smtp_server import SmtpTestServer

pytestmark = [
    pytest.mark.dovecot,
    # The test SMTP server takes AUTH without TLS, which aiosmtpd warns about.
    pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS"),
]

SUPPORT = "support@shop.example"
ADMIN = "root@example.com"
CUSTOMER = "olga@customer.example"
_cases = itertools.count(1)


@pytest.fixture(scope="module")
def dovecot() -> Iterator[DovecotServer]:
    config = SLASH_SEPARATOR_CONFIG + "mailbox_idle_check_interval = 1 secs\n"
    with DovecotServer(username=SUPPORT, extra_config=config) as server:
        yield server


@pytest.fixture
def folders(dovecot: DovecotServer) -> tuple[str, str]:
    """Two new folders of the test's own: a plain one and one with a non-ASCII name."""
    case = next(_cases)
    names = (f"Case{case}", f"Case{case}/Ärger")
    for name in names:
        dovecot.create_folder(name)
    return names


@pytest.fixture
def sent_folders(dovecot: DovecotServer, folders: tuple[str, str]) -> tuple[str, str]:
    """A folder of the test's own for customer mail, and one for the Sent copies."""
    inbox = folders[0]
    dovecot.create_folder(f"{inbox}/Sent")
    return inbox, f"{inbox}/Sent"


@pytest.fixture
def workers(state: Switchboard, monkeypatch: pytest.MonkeyPatch) -> Iterator[Workers]:
    """Background workers, not yet started, whose readers leave IDLE every second.

    The short IDLE lets every reader see a change of its channel's folders within a second.
    """
    monkeypatch.setattr(gateway.workers, "IDLE_SLICE_SECONDS", 1.0)
    running = Workers(state)
    yield running
    running.stop(timeout=10)
    assert not [name for name, thread in running.threads.items() if thread.is_alive()]


@pytest.fixture
def admin_token(state: Switchboard) -> str:
    with state.session_factory() as session:
        admin = create_agent(session, ADMIN, "Root Admin", AGENT_PASSWORD, role="admin")
        token = create_api_token(session, admin, "tests")
        session.commit()
        return token


def _add_email_channel(
    state: Switchboard, server: DovecotServer, folders: list[str], smtp: SmtpTestServer | None = None,
    **extra: object,
) -> Channel:
    with state.session_factory() as session:
        channel = add_channel(
            session, "email", "Shop Support", SUPPORT,
            {
                "imap_host": server.host, "imap_port": server.port, "imap_username": server.username,
                "imap_password": server.password, "imap_ssl": False, "imap_folders": folders,
                "smtp_host": smtp.host if smtp else "127.0.0.1", "smtp_port": smtp.port if smtp else 25,
                "smtp_security": "none", **extra,
            },
        )
        session.commit()
        session.refresh(channel)
        session.expunge(channel)
        return channel


def _mail(sender: str, subject: str, body: str, message_id: str | None) -> bytes:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = SUPPORT
    message["Subject"] = subject
    message["Date"] = "Sat, 05 Dec 2026 09:00:00 +0000"
    if message_id:
        message["Message-ID"] = f"<{message_id}>"
    message.set_content(body)
    return message.as_bytes()


def _import(state: Switchboard, channel: Channel, folder: str, reader_class: type[ImapReader] = ImapReader) -> int:
    """Run one import pass of one folder with a fresh connection, as its restarted reader would."""
    reader = MailboxReader(state, channel.id, threading.Event(), folder)
    with reader_class(imap_settings(channel, folder=folder)) as connection:
        return reader.import_new(connection, folder)


def _count(state: Switchboard, model: type) -> int:
    with state.session_factory() as session:
        return session.scalar(select(func.count()).select_from(model))


def _checkpoints(state: Switchboard) -> dict[str, tuple[int | None, int]]:
    with state.session_factory() as session:
        rows = session.scalars(select(MailboxCheckpoint)).all()
        return {row.folder: (row.uidvalidity, row.last_uid) for row in rows}


def _channel_item(app, token: str) -> dict:
    response = app.test_client().get("/api/v1/channels", headers={"Authorization": f"Bearer {token}"})
    (item,) = response.json["items"]
    return item


def _wait_until(condition: Callable[[], bool], timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


class _RecordingReader(ImapReader):
    """A real reader that also records the UIDs each fetch_new yielded."""

    fetched: list[int]

    def fetch_new(self, checkpoint: Checkpoint) -> Iterator[list[FetchedMail]]:
        self.fetched = []
        for batch in super().fetch_new(checkpoint):
            self.fetched += [mail.uid for mail in batch]
            yield batch


# --- checkpoints and identity across folders ---------------------------------------------------


def test_each_folder_keeps_its_own_checkpoint(state, dovecot, folders):
    plain, umlaut = folders
    channel = _add_email_channel(state, dovecot, list(folders))
    dovecot.append(_mail("ann@customer.example", "One", "first", "ann1@customer.example"), folder=plain)
    last_plain = dovecot.append(_mail("ann@customer.example", "Two", "second", "ann2@customer.example"), folder=plain)
    last_umlaut = dovecot.append(_mail("ben@customer.example", "Ärger", "angry", "ben1@customer.example"), folder=umlaut)

    assert _import(state, channel, plain) == 2
    assert _import(state, channel, umlaut) == 1

    checkpoints = _checkpoints(state)
    assert checkpoints[plain][1] == last_plain
    assert checkpoints[umlaut][1] == last_umlaut
    assert _import(state, channel, plain) == 0
    assert _import(state, channel, umlaut) == 0
    assert _count(state, Message) == 3


def test_mail_copied_into_two_folders_imports_once(state, dovecot, folders):
    plain, umlaut = folders
    channel = _add_email_channel(state, dovecot, list(folders))
    with_id = dovecot.append(_mail("cleo@customer.example", "Copied", "has an id", "cleo1@customer.example"), folder=plain)
    without_id = dovecot.append(_mail("cleo@customer.example", "Copied", "has no id", None), folder=plain)
    copy_mail(dovecot, [with_id, without_id], plain, umlaut)

    assert _import(state, channel, plain) == 2
    assert _import(state, channel, umlaut) == 0

    assert _count(state, Message) == 2
    assert _count(state, RawPayload) == 2
    # The copies were read and skipped, so the second folder's checkpoint moved past them.
    assert _checkpoints(state)[umlaut][1] == 2


def test_uidvalidity_change_resyncs_only_that_folder(state, dovecot, folders):
    plain, umlaut = folders
    channel = _add_email_channel(state, dovecot, list(folders))
    dovecot.append(_mail("dora@customer.example", "A", "plain one", "dora1@customer.example"), folder=plain)
    dovecot.append(_mail("dora@customer.example", "B", "umlaut one", "dora2@customer.example"), folder=umlaut)
    dovecot.append(_mail("dora@customer.example", "C", "umlaut two", "dora3@customer.example"), folder=umlaut)
    assert _import(state, channel, plain) + _import(state, channel, umlaut) == 3
    plain_before = _checkpoints(state)[plain]

    new_uidvalidity = int(time.time()) + 777
    dovecot.set_uidvalidity(new_uidvalidity, folder=umlaut)
    newest = dovecot.append(_mail("dora@customer.example", "D", "umlaut three", "dora4@customer.example"), folder=umlaut)

    plain_reader = MailboxReader(state, channel.id, threading.Event(), plain)
    with _RecordingReader(imap_settings(channel, folder=plain)) as connection:
        assert plain_reader.import_new(connection, plain) == 0
        assert connection.fetched == []
    umlaut_reader = MailboxReader(state, channel.id, threading.Event(), umlaut)
    with _RecordingReader(imap_settings(channel, folder=umlaut)) as connection:
        assert umlaut_reader.import_new(connection, umlaut) == 1
        assert connection.fetched == [1, 2, newest]

    checkpoints = _checkpoints(state)
    assert checkpoints[plain] == plain_before
    assert checkpoints[umlaut] == (new_uidvalidity, newest)
    assert _count(state, Message) == 4


# --- running readers ----------------------------------------------------------------------------


def test_running_workers_read_every_folder(state, dovecot, folders, workers):
    plain, umlaut = folders
    _add_email_channel(state, dovecot, list(folders))
    workers.start()

    dovecot.append(_mail("emil@customer.example", "Plain", "into the plain folder", "emil1@customer.example"), folder=plain)
    dovecot.append(_mail("emil@customer.example", "Umlaut", "into Ärger", "emil2@customer.example"), folder=umlaut)

    assert _wait_until(lambda: _count(state, Message) == 2)
    assert {f"imap-1-{plain}", f"imap-1-{umlaut}"} <= set(workers.threads)


def test_missing_folder_fails_alone(app, state, dovecot, folders, admin_token, workers):
    plain, _ = folders
    missing = f"{plain}/Missing"
    _add_email_channel(state, dovecot, [plain, missing])
    workers.start()
    dovecot.append(_mail("fay@customer.example", "Still read", "the other folder works", "fay1@customer.example"), folder=plain)

    def settled() -> bool:
        folders_by_name = {f["name"]: f for f in _channel_item(app, admin_token)["folders"]}
        return _count(state, Message) == 1 and folders_by_name[missing]["last_error"] is not None

    assert _wait_until(settled)
    item = _channel_item(app, admin_token)

    by_name = {folder["name"]: folder for folder in item["folders"]}
    assert "select failed" in by_name[missing]["last_error"]
    assert by_name[missing]["last_sync_at"] is None
    assert by_name[plain]["last_error"] is None
    assert by_name[plain]["last_sync_at"] is not None
    assert 0 <= by_name[plain]["sync_lag_seconds"] < 3600
    assert item["last_error"] is None


def test_workers_follow_folder_changes(state, dovecot, folders, workers):
    plain, umlaut = folders
    channel = _add_email_channel(state, dovecot, [plain])
    workers.start()
    assert _wait_until(lambda: plain in _checkpoints(state))

    with state.session_factory() as session:
        update_email_folders(session, channel.id, [umlaut], None)
        session.commit()
    dovecot.append(_mail("gus@customer.example", "Old folder", "no longer read", "gus2@customer.example"), folder=plain)
    workers.refresh_mailboxes()
    dovecot.append(_mail("gus@customer.example", "New folder", "read after the change", "gus1@customer.example"), folder=umlaut)

    old_reader = workers.threads[f"imap-{channel.id}-{plain}"]
    old_reader.join(30)
    assert not old_reader.is_alive()
    assert _wait_until(lambda: _count(state, Message) == 1)
    with state.session_factory() as session:
        assert session.scalars(select(Message.text)).one().strip() == "read after the change"


# --- API, page and CLI ---------------------------------------------------------------------------


def test_channels_api_lists_folder_health(app, state, dovecot, folders, admin_token):
    plain, umlaut = folders
    channel = _add_email_channel(state, dovecot, list(folders))
    dovecot.append(_mail("hal@customer.example", "Hi", "hello", "hal1@customer.example"), folder=umlaut)
    _import(state, channel, umlaut)

    item = _channel_item(app, admin_token)

    assert [folder["name"] for folder in item["folders"]] == [plain, umlaut]
    never, synced = item["folders"]
    assert never["last_sync_at"] is None
    assert never["uidvalidity"] is None
    assert synced["last_sync_at"] is not None
    assert synced["uidvalidity"] is not None
    assert synced["last_uid"] == 1
    assert synced["last_error"] is None
    assert item["sent_folder"] is None
    assert item["warnings"] == []
    assert item["settings"]["imap_folders"] == [plain, umlaut]


def test_patch_sets_folders_and_sent_folder(app, state, dovecot, admin_token):
    channel = _add_email_channel(state, dovecot, ["INBOX"])

    response = app.test_client().patch(
        f"/api/v1/channels/{channel.id}",
        json={"imap_folders": ["inbox", " Support/Ärger "], "sent_folder": "[Gmail]/Sent Mail"},
        headers={"Authorization": f"Bearer {admin_token}"},
    )

    assert response.status_code == 200
    assert [folder["name"] for folder in response.json["folders"]] == ["INBOX", "Support/Ärger"]
    assert response.json["sent_folder"] == "[Gmail]/Sent Mail"
    with state.session_factory() as session:
        stored = session.get(Channel, channel.id).settings
        assert stored["imap_folders"] == ["INBOX", "Support/Ärger"]
        assert stored["sent_folder"] == "[Gmail]/Sent Mail"


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"imap_folders": []}, "imap_folders", "at least one folder"),
        ({"imap_folders": "INBOX"}, "imap_folders", "at least one folder"),
        ({"imap_folders": ["Support", "Support"]}, "imap_folders", "listed twice"),
        ({"imap_folders": ["INBOX", "inbox"]}, "imap_folders", "listed twice"),
        ({"imap_folders": ["bad\r\nname"]}, "imap_folders", "control character"),
        ({"imap_folders": [""]}, "imap_folders", "empty"),
        ({"imap_folders": [7]}, "imap_folders", "must be text"),
        ({"imap_folders": ["x" * 501]}, "imap_folders", "longer than 500"),
        ({"sent_folder": 1}, "sent_folder", "must be text"),
        ({"colour": "blue"}, "colour", "Unknown setting"),
    ],
)
def test_patch_rejects_invalid_folders(app, state, dovecot, admin_token, body, field, message):
    channel = _add_email_channel(state, dovecot, ["INBOX"])

    response = app.test_client().patch(
        f"/api/v1/channels/{channel.id}", json=body, headers={"Authorization": f"Bearer {admin_token}"}
    )

    assert response.status_code == 400
    assert response.json["error"]["field"] == field
    assert message in response.json["error"]["message"]
    with state.session_factory() as session:
        assert session.get(Channel, channel.id).settings["imap_folders"] == ["INBOX"]


def test_patch_needs_an_admin_and_an_email_channel(app, state, dovecot, api_token, admin_token, whatsapp_channel):
    channel = _add_email_channel(state, dovecot, ["INBOX"])
    client = app.test_client()

    as_agent = client.patch(f"/api/v1/channels/{channel.id}", json={"sent_folder": "Sent"},
                            headers={"Authorization": f"Bearer {api_token}"})
    on_whatsapp = client.patch(f"/api/v1/channels/{whatsapp_channel.id}", json={"sent_folder": "Sent"},
                               headers={"Authorization": f"Bearer {admin_token}"})
    unknown = client.patch("/api/v1/channels/99", json={"sent_folder": "Sent"},
                           headers={"Authorization": f"Bearer {admin_token}"})

    assert as_agent.status_code == 403
    assert on_whatsapp.status_code == 400
    assert "only email channels" in on_whatsapp.json["error"]["message"]
    assert unknown.status_code == 404


def test_channels_page_shows_health_and_saves_folders(app, state, dovecot, folders, admin_token):
    plain, umlaut = folders
    channel = _add_email_channel(state, dovecot, [plain])
    client = app.test_client()
    csrf = login(client, ADMIN)

    page = client.get("/channels")
    saved = client.post(
        f"/channels/{channel.id}/folders",
        data={"csrf_token": csrf, "imap_folders": f"{plain}\r\n{umlaut}\r\n", "sent_folder": "Sent"},
    )
    rejected = client.post(
        f"/channels/{channel.id}/folders",
        data={"csrf_token": csrf, "imap_folders": f"{plain}\n{plain}", "sent_folder": ""},
    )
    after = client.get("/channels")

    assert page.status_code == 200
    assert plain in page.get_data(as_text=True)
    assert saved.status_code == 303
    assert rejected.status_code == 400
    assert "is listed twice" in rejected.get_data(as_text=True)
    assert umlaut in after.get_data(as_text=True)
    with state.session_factory() as session:
        stored = session.get(Channel, channel.id).settings
        assert stored["imap_folders"] == [plain, umlaut]
        assert stored["sent_folder"] == "Sent"


def test_channels_page_needs_an_admin(app, agent):
    client = app.test_client()
    login(client)

    assert client.get("/channels").status_code == 403


def test_cli_adds_folders_and_sent_folder(state, database_url, tmp_path):
    runner = CliRunner()
    env = {"SWITCHBOARD_DATABASE_URL": database_url, "SWITCHBOARD_INSTANCE_DIR": str(tmp_path)}
    common = ["channel", "add", "email", "--name", "Support", "--imap-host", "imap.example.com",
              "--imap-username", "u", "--imap-password", "p", "--smtp-host", "smtp.example.com"]

    added = runner.invoke(main, [*common, "--address", "a@example.com", "--folder", "INBOX",
                                 "--folder", "Support/Ärger", "--sent-folder", "Sent"], env=env)
    default = runner.invoke(main, [*common, "--address", "b@example.com"], env=env)
    invalid = runner.invoke(main, [*common, "--address", "c@example.com", "--folder", "INBOX",
                                   "--folder", "Inbox"], env=env)

    assert added.exit_code == 0, added.output
    assert default.exit_code == 0, default.output
    assert invalid.exit_code == 1
    assert "listed twice" in invalid.output
    with state.session_factory() as session:
        first, second = session.scalars(select(Channel).order_by(Channel.id)).all()
        assert first.settings["imap_folders"] == ["INBOX", "Support/Ärger"]
        assert first.settings["sent_folder"] == "Sent"
        assert second.settings["imap_folders"] == ["INBOX"]
        assert second.settings["sent_folder"] is None


def test_channel_from_before_folder_lists_reads_its_folder(state, dovecot, folders):
    plain, _ = folders
    channel = _add_email_channel(state, dovecot, [plain])
    with state.session_factory() as session:
        stored = session.get(Channel, channel.id)
        # The settings as an older version stored them: one folder, no list.
        stored.settings = {key: value for key, value in stored.settings.items() if key != "imap_folders"} | {"imap_folder": plain}
        session.commit()
        session.refresh(stored)
        session.expunge(stored)
    dovecot.append(_mail("ida@customer.example", "Old style", "one folder", "ida1@customer.example"), folder=plain)

    assert imap_settings(stored).folder == plain
    assert _import(state, stored, plain) == 1


# --- the copy in the Sent folder -------------------------------------------------------------------


def _reply_and_dispatch(state: Switchboard, agent, channel: Channel, inbox: str, server: DovecotServer,
                        number: int) -> int:
    """Import a customer's mail, queue an agent's reply to it and run the dispatcher once."""
    server.append(_mail(f"Olga <{CUSTOMER}>", "Where is my parcel?", "It has been a week.",
                        f"olga{number}@customer.example"), folder=inbox)
    _import(state, channel, inbox)
    with state.session_factory() as session:
        conversation_id = session.scalar(select(Conversation.id).order_by(Conversation.id.desc()))
        reply = create_reply(session, conversation_id, agent.id, f"It left our warehouse today ({number}).")
        session.commit()
        reply_id = reply.id
    OutboxDispatcher(state, threading.Event()).dispatch_due()
    return reply_id


def test_sent_reply_is_filed_as_seen_copy(state, agent, dovecot, smtp, sent_folders):
    inbox, sent = sent_folders
    channel = _add_email_channel(state, dovecot, [inbox], smtp=smtp, sent_folder=sent)

    _reply_and_dispatch(state, agent, channel, inbox, dovecot, 1)

    (delivered,) = smtp.wait_for(1)
    ((flags, copy),) = read_folder(dovecot, sent)
    assert b"\\Seen" in flags
    assert copy == delivered.raw


def test_own_sent_copy_not_imported(state, agent, dovecot, smtp, sent_folders):
    inbox, sent = sent_folders
    channel = _add_email_channel(state, dovecot, [inbox, sent], smtp=smtp, sent_folder=sent)
    _reply_and_dispatch(state, agent, channel, inbox, dovecot, 2)
    assert len(read_folder(dovecot, sent)) == 1

    assert _import(state, channel, sent) == 0

    # The copy was fetched and recognised, not missed: the checkpoint moved past it.
    assert _checkpoints(state)[sent][1] == 1
    assert _count(state, Message) == 2
    assert _count(state, Conversation) == 1
    with state.session_factory() as session:
        directions = session.scalars(select(Message.direction).order_by(Message.id)).all()
        assert directions == ["inbound", "outbound"]


def test_failed_copy_warns_without_resending(app, state, agent, dovecot, smtp, sent_folders, admin_token, caplog):
    inbox, _ = sent_folders
    channel = _add_email_channel(state, dovecot, [inbox], smtp=smtp, sent_folder="Nowhere")

    with caplog.at_level(logging.WARNING, logger="gateway.workers"):
        reply_id = _reply_and_dispatch(state, agent, channel, inbox, dovecot, 3)
    OutboxDispatcher(state, threading.Event()).dispatch_due()

    assert len(smtp.wait_for(1)) == 1
    assert len(smtp.received) == 1
    with state.session_factory() as session:
        assert session.get(Message, reply_id).delivery_status == "sent"
        item = session.scalar(select(OutboxItem))
        assert (item.status, item.attempts) == ("sent", 1)
    (warning,) = _channel_item(app, admin_token)["warnings"]
    assert warning["code"] == "sent_copy_failed"
    assert f"Message {reply_id} was sent" in warning["message"]
    assert "Nowhere" in warning["message"]
    assert warning["at"] is not None
    (logged,) = [record.getMessage() for record in caplog.records if "copy of message" in record.getMessage()]
    assert f"copy of message {reply_id} (outbox item {item.id}, Message-ID " in logged


def test_next_successful_copy_clears_the_warning(app, state, agent, dovecot, smtp, sent_folders, admin_token):
    inbox, sent = sent_folders
    channel = _add_email_channel(state, dovecot, [inbox], smtp=smtp, sent_folder="Nowhere")
    _reply_and_dispatch(state, agent, channel, inbox, dovecot, 4)
    assert _channel_item(app, admin_token)["warnings"] != []

    with state.session_factory() as session:
        update_email_folders(session, channel.id, [inbox], sent)
        session.commit()
    _reply_and_dispatch(state, agent, channel, inbox, dovecot, 5)

    assert _channel_item(app, admin_token)["warnings"] == []
    assert len(read_folder(dovecot, sent)) == 1


def test_no_copy_by_default(state, agent, dovecot, smtp, sent_folders):
    inbox, sent = sent_folders
    channel = _add_email_channel(state, dovecot, [inbox], smtp=smtp, sent_folder=None)

    _reply_and_dispatch(state, agent, channel, inbox, dovecot, 6)

    assert len(smtp.wait_for(1)) == 1
    assert read_folder(dovecot, sent) == []


def test_rejected_reply_gets_no_copy(state, agent, dovecot, smtp, sent_folders):
    inbox, sent = sent_folders
    channel = _add_email_channel(state, dovecot, [inbox], smtp=smtp, sent_folder=sent)
    smtp.reject_recipient(CUSTOMER)

    reply_id = _reply_and_dispatch(state, agent, channel, inbox, dovecot, 7)

    with state.session_factory() as session:
        assert session.get(Message, reply_id).delivery_status == "failed"
    assert read_folder(dovecot, sent) == []


# --- folders of a channel that signs in with OAuth 2.0 ----------------------------------------------


@pytest.fixture(scope="module")
def oauth() -> Iterator[OAuthTestServer]:
    with OAuthTestServer() as server:
        yield server


@pytest.fixture(scope="module")
def oauth_dovecot(oauth: OAuthTestServer) -> Iterator[DovecotServer]:
    config = SLASH_SEPARATOR_CONFIG + "mailbox_idle_check_interval = 1 secs\n"
    with DovecotServer(username=SUPPORT, oauth2_tokeninfo_url=oauth.tokeninfo_url, extra_config=config) as server:
        server.create_folder("Support/Ärger")
        server.create_folder("Sent")
        yield server


def test_oauth_channel_folders_and_copies(state, agent, oauth, oauth_dovecot, workers, caplog):
    with SmtpTestServer(oauth2=oauth) as smtp:
        channel = _add_email_channel(
            state, oauth_dovecot, ["INBOX", "Support/Ärger"], smtp=smtp, sent_folder="Sent",
            smtp_username=SUPPORT, auth="oauth2", oauth_provider="custom", oauth_client_id=oauth.client_id,
            oauth_client_secret=oauth.client_secret, oauth_refresh_token=oauth.grant(SUPPORT),
            oauth_token_url=oauth.token_url, oauth_scopes=SCOPE,
        )
        with caplog.at_level(logging.INFO, logger="gateway.workers"):
            workers.start()
            oauth_dovecot.append(
                _mail(f"Olga <{CUSTOMER}>", "Ärger", "It broke again.", "olga-oauth@customer.example"),
                folder="Support/Ärger",
            )
            assert _wait_until(lambda: _count(state, Message) == 1)
            # Several IDLE rounds, so a reader that reconnected each round would show.
            time.sleep(3)
            with state.session_factory() as session:
                reply = create_reply(session, 1, agent.id, "A new one is on its way.")
                session.commit()
            workers.dispatcher.dispatch_due()

        (delivered,) = smtp.wait_for(1)

    def reply_status() -> str:
        with state.session_factory() as session:
            return session.get(Message, reply.id).delivery_status

    # The running dispatcher may have claimed the reply before dispatch_due, and it records
    # the send a moment after the server took the mail.
    assert _wait_until(lambda: reply_status() == "sent"), reply_status()
    ((flags, copy),) = read_folder(oauth_dovecot, "Sent")
    assert b"\\Seen" in flags
    assert copy == delivered.raw
    connections = [record.getMessage() for record in caplog.records if " connected to " in record.getMessage()]
    assert len(connections) == 2
