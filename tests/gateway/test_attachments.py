"""Attachment files: stored on disk once, served safely, and omitted above the size limit."""

from __future__ import annotations

import io
import os
import time
from email.message import EmailMessage

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from channels.email.parse import parse_email
from gateway import api
from gateway.cli import main
from inbox.channel_config import add_channel
from inbox.ingest import ingest_message
from inbox.models import Attachment
from inbox.storage import AttachmentStore, attachment_store
from tests.support.conversations import receive

SUPPORT = "support@shop.example"
LIMIT = 100_000


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def channel_id(state) -> int:
    with state.session_factory() as session:
        channel = add_channel(session, "email", "Shop", SUPPORT, {
            "imap_host": "127.0.0.1", "imap_port": 993, "imap_username": "x", "imap_password": "x",
            "smtp_host": "127.0.0.1", "smtp_port": 25, "smtp_security": "none",
            "max_attachment_bytes": LIMIT,
        })
        session.commit()
        return channel.id


def _mail_with_files(message_id: str, files: dict[str, bytes]) -> bytes:
    message = EmailMessage()
    message["From"] = "carla@customer.example"
    message["To"] = SUPPORT
    message["Subject"] = "Photos of the damage"
    message["Message-ID"] = f"<{message_id}>"
    message.set_content("See the attached files.")
    for filename, data in files.items():
        message.add_attachment(data, maintype="application", subtype="octet-stream", filename=filename)
    return message.as_bytes()


def _ingest(state, channel_id: int, raw: bytes) -> int:
    with state.session_factory() as session:
        result = ingest_message(session, channel_id, parse_email(raw))
    assert result.message_id is not None
    return result.message_id


def _attachments(state, message_id: int) -> list[Attachment]:
    with state.session_factory() as session:
        return list(session.scalars(
            select(Attachment).where(Attachment.message_id == message_id).order_by(Attachment.id)
        ))


def test_attachment_bytes_live_on_disk(state, channel_id):
    invoice = b"%PDF-1.7 invoice " + bytes(range(256)) * 100
    message_id = _ingest(state, channel_id, _mail_with_files("disk@customer.example", {"invoice.pdf": invoice}))

    [row] = _attachments(state, message_id)
    assert row.data is None
    assert row.omitted_reason is None
    assert row.size == len(invoice)
    with state.session_factory() as session:
        store = attachment_store(session)
    assert store.read(row.storage_key) == invoice
    assert store.path(row.storage_key).is_relative_to(state.config.instance_dir)


def test_identical_files_stored_once(state, channel_id):
    logo = b"\x89PNG signature logo" * 50
    first = _ingest(state, channel_id, _mail_with_files("one@customer.example", {"logo.png": logo}))
    second = _ingest(state, channel_id, _mail_with_files("two@customer.example", {"logo.png": logo}))

    [one], [two] = _attachments(state, first), _attachments(state, second)
    assert one.id != two.id
    assert one.storage_key == two.storage_key
    with state.session_factory() as session:
        store = attachment_store(session)
    assert list(store.keys()) == [one.storage_key]


def test_oversize_attachment_is_listed_not_stored(state, channel_id, client, api_token):
    small = b"small file" * 10
    large = bytes(LIMIT + 1)
    message_id = _ingest(state, channel_id, _mail_with_files(
        "big@customer.example", {"notes.txt": small, "video.mov": large}
    ))

    stored, omitted = _attachments(state, message_id)
    assert stored.storage_key is not None
    assert omitted.storage_key is None
    assert omitted.data is None
    assert omitted.size == len(large)
    assert "larger than this channel's limit" in omitted.omitted_reason

    headers = {"Authorization": f"Bearer {api_token}"}
    response = client.get(f"/api/v1/attachments/{omitted.id}", headers=headers)
    assert response.status_code == 404
    assert "was not stored" in response.get_json()["error"]["message"]

    conversation = client.get("/api/v1/conversations", headers=headers).get_json()["items"][0]
    thread = client.get(f"/api/v1/conversations/{conversation['id']}", headers=headers).get_json()
    listed = {item["filename"]: item for item in thread["messages"][0]["attachments"]}
    assert listed["video.mov"]["url"] is None
    assert listed["video.mov"]["omitted_reason"] == omitted.omitted_reason
    assert listed["notes.txt"]["url"] == f"/api/v1/attachments/{stored.id}"


def test_download_is_a_safe_attachment(state, channel_id, client, api_token):
    page = b"<html><script>alert(1)</script></html>"
    message_id = _ingest(state, channel_id, _mail_with_files("html@customer.example", {"page.html": page}))
    [row] = _attachments(state, message_id)

    response = client.get(f"/api/v1/attachments/{row.id}", headers={"Authorization": f"Bearer {api_token}"})
    assert response.status_code == 200
    assert response.data == page
    assert response.mimetype == "application/octet-stream"
    assert response.headers["Content-Disposition"].startswith('attachment; filename="page.html"')
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in response.headers["Content-Security-Policy"]


def test_download_needs_authentication(state, channel_id, client):
    message_id = _ingest(state, channel_id, _mail_with_files("anon@customer.example", {"a.txt": b"secret"}))
    [row] = _attachments(state, message_id)
    assert client.get(f"/api/v1/attachments/{row.id}").status_code == 401


@pytest.mark.parametrize("key", ["../../etc/passwd", "ABCDEF" * 10 + "ABCD", "a" * 63, "", "a" * 64 + "/x"])
def test_store_rejects_invalid_keys(tmp_path, key):
    store = AttachmentStore(tmp_path)
    with pytest.raises(ValueError, match="invalid attachment key"):
        store.path(key)


def test_store_lists_unreferenced_files(tmp_path):
    store = AttachmentStore(tmp_path)
    kept = store.put(b"kept")
    orphan = store.put(b"orphan")
    assert store.put(b"kept") == kept
    assert store.unreferenced({kept}) == [orphan]
    assert not list(tmp_path.rglob(".incoming-*"))


def test_prune_removes_only_old_orphans(state, channel_id, database_url):
    message_id = _ingest(state, channel_id, _mail_with_files("kept@customer.example", {"kept.txt": b"kept"}))
    [row] = _attachments(state, message_id)
    with state.session_factory() as session:
        store = attachment_store(session)
    old_orphan = store.put(b"left by a rolled-back import")
    new_orphan = store.put(b"written by an import in progress")
    day_ago = time.time() - 25 * 3600
    for key in (row.storage_key, old_orphan):
        os.utime(store.path(key), (day_ago, day_ago))

    env = {"SWITCHBOARD_DATABASE_URL": database_url, "SWITCHBOARD_ATTACHMENTS_DIR": str(store.root)}
    runner = CliRunner()
    dry = runner.invoke(main, ["attachments", "prune", "--dry-run"], env=env, catch_exceptions=False)
    assert dry.exit_code == 0
    assert "1 unreferenced file(s) found" in dry.output
    assert store.path(old_orphan).exists()

    result = runner.invoke(main, ["attachments", "prune"], env=env, catch_exceptions=False)
    assert result.exit_code == 0
    assert "1 unreferenced file(s) removed" in result.output
    assert not store.path(old_orphan).exists()
    assert store.path(new_orphan).exists()
    assert store.path(row.storage_key).exists()


def test_storing_again_marks_file_recent(tmp_path):
    store = AttachmentStore(tmp_path)
    key = store.put(b"logo")
    day_ago = time.time() - 25 * 3600
    os.utime(store.path(key), (day_ago, day_ago))

    assert store.put(b"logo") == key

    # A prune of day-old files now keeps it until the new reference is committed.
    assert store.path(key).stat().st_mtime > time.time() - 60


def test_missing_file_is_a_clear_404(state, channel_id, client, api_token):
    message_id = _ingest(state, channel_id, _mail_with_files("lost@customer.example", {"a.txt": b"lost"}))
    [row] = _attachments(state, message_id)
    with state.session_factory() as session:
        attachment_store(session).path(row.storage_key).unlink()

    response = client.get(f"/api/v1/attachments/{row.id}", headers={"Authorization": f"Bearer {api_token}"})

    assert response.status_code == 404
    assert "missing from the attachment folder" in response.get_json()["error"]["message"]


# ---- Files in agents' replies ----------------------------------------------------------------


def _reply_with_file(app, api_token, conversation_id: int, size: int):
    photo = (b"\xff\xd8\xff" + b"\x00" * size, "photo.jpg", "image/jpeg")
    return app.test_client().post(
        f"/api/v1/conversations/{conversation_id}/messages",
        data={"text": "The photo you asked for", "attachments": (io.BytesIO(photo[0]), photo[1], photo[2])},
        headers={"Authorization": f"Bearer {api_token}"}, content_type="multipart/form-data",
    )


def test_reply_file_above_general_limit(app, state, api_token, whatsapp_channel):
    conversation_id = receive(state, whatsapp_channel.id, "+15551230000").conversation_id

    response = _reply_with_file(app, api_token, conversation_id, 3 * 1024 * 1024)

    assert response.status_code == 201, response.get_json()
    assert response.json["attachments"][0]["size"] == 3 * 1024 * 1024 + 3


def test_oversized_reply_rejected(app, state, api_token, whatsapp_channel, monkeypatch):
    monkeypatch.setattr(api, "REPLY_BODY_LIMIT", 1024 * 1024)
    conversation_id = receive(state, whatsapp_channel.id, "+15551230000").conversation_id

    response = _reply_with_file(app, api_token, conversation_id, 2 * 1024 * 1024)

    assert response.status_code == 413
    assert response.json["error"]["code"] == "too_large"
    assert response.json["error"]["field"] == "attachments"
    assert "1 MB" in response.json["error"]["message"]
    with state.session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Attachment)) == 0


def test_other_requests_keep_2mb_limit(app, api_token):
    response = app.test_client().post(
        "/api/v1/canned-responses", data=b"{" + b" " * (3 * 1024 * 1024) + b"}",
        headers={"Authorization": f"Bearer {api_token}"}, content_type="application/json",
    )

    assert response.status_code == 413
    assert response.json["error"] == {
        "code": "too_large", "message": "The request is larger than 2 MB, the most this endpoint accepts.",
    }
