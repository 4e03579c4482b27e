"""Media of Meta WhatsApp messages: kept as ids by the webhook, downloaded by the workers afterwards."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from gateway import create_app, get_state
from gateway.media import MediaFetcher
from inbox.channel_config import add_channel
from inbox.models import Attachment, Channel, utcnow
from inbox.storage import attachment_store
from tests.support.meta_server import MetaTestServer, change, encode, entry, message, signature, webhook_body

PHOTO = b"\xff\xd8\xff\xe0 a photo of the dented box" + bytes(range(256)) * 20
CUSTOMER = "15551230000"


@pytest.fixture
def meta_server():
    with MetaTestServer() as server:
        yield server


@pytest.fixture
def media_app(config, meta_server):
    app = create_app(replace(config, meta_api_base_url=meta_server.base_url))
    yield app
    get_state(app).engine.dispose()


@pytest.fixture
def media_state(media_app):
    return get_state(media_app)


@pytest.fixture
def channel(media_state, meta_server) -> Channel:
    settings = meta_server.channel_settings(max_attachment_bytes=100_000)
    with media_state.session_factory() as session:
        created = add_channel(session, "whatsapp", "WhatsApp Cloud", "+15550783881", settings)
        session.commit()
        return created


def _post_media(media_app, meta_server, channel: Channel, *media: tuple[str, dict]) -> None:
    document = webhook_body(entry(change(
        meta_server.phone_number_id, messages=[message(CUSTOMER, kind, content) for kind, content in media],
    )))
    body = encode(document)
    response = media_app.test_client().post(
        f"/webhooks/meta/{channel.id}", data=body, content_type="application/json",
        headers={"X-Hub-Signature-256": signature(meta_server.app_secret, body)},
    )
    assert response.status_code == 200


def _attachments(state) -> list[Attachment]:
    with state.session_factory() as session:
        return list(session.scalars(select(Attachment).order_by(Attachment.id)))


def _fetch_round(state) -> int:
    return MediaFetcher(state, threading.Event()).fetch_due()


def _reschedule_now(state) -> None:
    with state.session_factory() as session:
        session.execute(
            update(Attachment).where(Attachment.fetch_status == "pending")
            .values(next_fetch_at=utcnow() - timedelta(seconds=1))
        )
        session.commit()


def test_webhook_keeps_media_id_as_pending(media_app, media_state, meta_server, channel):
    media_id = meta_server.add_media(PHOTO, "image/jpeg")

    _post_media(media_app, meta_server, channel, ("image", {"id": media_id, "mime_type": "image/jpeg"}))

    [row] = _attachments(media_state)
    assert row.fetch_status == "pending"
    assert row.source_url == f"meta-media:{media_id}"
    assert row.filename == "image-1.jpg"
    # Nothing was downloaded while the webhook request was handled.
    assert meta_server.media_requests == []


def test_media_is_downloaded_with_the_access_token(media_app, media_state, meta_server, channel):
    photo = meta_server.add_media(PHOTO, "image/jpeg")
    voice = meta_server.add_media(b"OggS a voice note", "audio/ogg; codecs=opus")
    _post_media(media_app, meta_server, channel,
                ("image", {"id": photo, "mime_type": "image/jpeg"}),
                ("audio", {"id": voice, "mime_type": "audio/ogg; codecs=opus", "voice": True}))

    assert _fetch_round(media_state) == 2

    stored = _attachments(media_state)
    assert [row.fetch_status for row in stored] == ["stored", "stored"]
    assert [row.content_type for row in stored] == ["image/jpeg", "audio/ogg"]
    assert stored[0].filename == "image-1.jpg"
    with media_state.session_factory() as session:
        store = attachment_store(session)
        assert store.read(stored[0].storage_key) == PHOTO
        assert store.read(stored[1].storage_key) == b"OggS a voice note"
    assert len(meta_server.media_requests) == 4


def test_lookup_outage_is_retried(media_app, media_state, meta_server, channel):
    media_id = meta_server.add_media(PHOTO, "image/jpeg")
    _post_media(media_app, meta_server, channel, ("image", {"id": media_id, "mime_type": "image/jpeg"}))
    meta_server.fail_media_lookups = 1

    _fetch_round(media_state)
    [waiting] = _attachments(media_state)
    _reschedule_now(media_state)
    _fetch_round(media_state)

    assert waiting.fetch_status == "pending"
    assert waiting.fetch_attempts == 1
    [row] = _attachments(media_state)
    assert row.fetch_status == "stored"
    assert row.fetch_attempts == 2


@pytest.mark.parametrize(
    ("data", "content_type", "reason"),
    [
        (b"MZ" + bytes(100), "application/x-msdownload", "not accepted"),
        (bytes(100_001), "video/mp4", "larger than this channel's limit"),
    ],
)
def test_refused_media_fails_at_once(media_app, media_state, meta_server, channel, data, content_type, reason):
    media_id = meta_server.add_media(data, content_type)
    _post_media(media_app, meta_server, channel, ("document", {"id": media_id, "mime_type": content_type}))

    assert _fetch_round(media_state) == 1

    [row] = _attachments(media_state)
    assert row.fetch_status == "failed"
    assert row.storage_key is None
    assert reason in row.omitted_reason


def test_unknown_media_id_fails_without_retry(media_app, media_state, meta_server, channel):
    _post_media(media_app, meta_server, channel, ("image", {"id": "4490709327384033", "mime_type": "image/jpeg"}))

    _fetch_round(media_state)

    [row] = _attachments(media_state)
    assert row.fetch_status == "failed"
    assert row.fetch_attempts == 1
    assert "looking up media 4490709327384033 failed" in row.omitted_reason
