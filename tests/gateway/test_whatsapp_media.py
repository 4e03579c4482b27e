"""WhatsApp media: stored as pending by the webhook, downloaded after it by the workers."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import select, update
from twilio.request_validator import RequestValidator

from channels.whatsapp import media as media_module
from channels.whatsapp.media import MediaError, download_twilio_media
from gateway import create_app, get_state
from gateway.media import MediaFetcher
from gateway.simulate import build_message_form
from gateway.workers import Workers
from inbox.events import add_publisher
from inbox.media import MAX_FETCH_ATTEMPTS
from inbox.channel_config import add_channel
from inbox.models import Attachment, Channel, utcnow
from inbox.storage import attachment_store
from tests.conftest import TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN
from tests.support.twilio_media_server import TwilioMediaServer
from tests.support.whatsapp import ingest_webhooks

PHOTO = b"\xff\xd8\xff\xe0 a photo of the broken parcel" + bytes(range(256)) * 20
VCARD = b"BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Grace Hopper\r\nTEL:+15551239999\r\nEND:VCARD\r\n"


@pytest.fixture
def media_server() -> Iterator[TwilioMediaServer]:
    with TwilioMediaServer(TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN) as server:
        yield server


@pytest.fixture
def media_app(config, media_server):
    app = create_app(dataclasses.replace(config, twilio_api_base_url=media_server.base_url))
    app.config["TESTING"] = True
    yield app
    get_state(app).engine.dispose()


@pytest.fixture
def media_state(media_app):
    return get_state(media_app)


@pytest.fixture
def channel(media_state) -> Channel:
    with media_state.session_factory() as session:
        created = add_channel(session, "whatsapp", "WhatsApp", "+14155238886", {
            "account_sid": TWILIO_ACCOUNT_SID, "auth_token": TWILIO_AUTH_TOKEN,
            "max_attachment_bytes": 100_000,
        })
        session.commit()
        return created


def _post_with_media(app, channel: Channel, media: list[tuple[str, str]], text: str = "") -> None:
    form = build_message_form(channel, "+15551230000", text, "Grace")
    form["NumMedia"] = str(len(media))
    for index, (url, content_type) in enumerate(media):
        form[f"MediaUrl{index}"] = url
        form[f"MediaContentType{index}"] = content_type
    path = f"/webhooks/twilio/{channel.id}/messages"
    signature = RequestValidator(TWILIO_AUTH_TOKEN).compute_signature("http://localhost" + path, form)
    response = app.test_client().post(path, data=form, headers={"X-Twilio-Signature": signature})
    assert response.status_code == 200
    ingest_webhooks(get_state(app))


def _attachments(state) -> list[Attachment]:
    with state.session_factory() as session:
        return list(session.scalars(select(Attachment).order_by(Attachment.id)))


def _fetch_round(state) -> int:
    return MediaFetcher(state, threading.Event()).fetch_due()


def test_webhook_stores_media_as_pending(media_app, media_state, channel, media_server):
    url = media_server.add("ME1", PHOTO, "image/jpeg")
    _post_with_media(media_app, channel, [(url, "image/jpeg")], "See the photo")

    [row] = _attachments(media_state)
    assert row.fetch_status == "pending"
    assert row.source_url == url
    assert row.filename == "image-1.jpg"
    # Nothing was downloaded before the webhook response.
    assert media_server.requests == []


def test_download_follows_redirect_without_credentials(media_app, media_state, channel, media_server):
    photo = media_server.add("ME1", PHOTO, "image/jpeg")
    card = media_server.add("ME2", VCARD, "text/x-vcard", filename="Grace Hopper.vcf")
    _post_with_media(media_app, channel, [(photo, "image/jpeg"), (card, "text/x-vcard")])

    assert _fetch_round(media_state) == 2

    stored = _attachments(media_state)
    assert [row.fetch_status for row in stored] == ["stored", "stored"]
    assert [row.filename for row in stored] == ["image-1.jpg", "Grace Hopper.vcf"]
    assert [row.size for row in stored] == [len(PHOTO), len(VCARD)]
    with media_state.session_factory() as session:
        store = attachment_store(session)
        assert store.read(stored[0].storage_key) == PHOTO
        assert store.read(stored[1].storage_key) == VCARD

    api_requests = [r for r in media_server.requests if r.host.startswith("127.0.0.1")]
    media_requests = [r for r in media_server.requests if r.host.startswith("localhost")]
    assert len(api_requests) == 2
    assert all(r.authorization and r.authorization.startswith("Basic ") for r in api_requests)
    assert len(media_requests) == 2
    assert all(r.authorization is None for r in media_requests)


def test_first_404_is_retried(media_app, media_state, channel, media_server):
    url = media_server.add("ME1", PHOTO, "image/jpeg", not_found_first=1)
    _post_with_media(media_app, channel, [(url, "image/jpeg")])

    assert _fetch_round(media_state) == 1
    [row] = _attachments(media_state)
    assert row.fetch_status == "pending"
    assert row.fetch_attempts == 1
    assert row.next_fetch_at is not None

    _reschedule_now(media_state)
    assert _fetch_round(media_state) == 1
    [row] = _attachments(media_state)
    assert row.fetch_status == "stored"
    assert row.fetch_attempts == 2


def test_missing_media_gives_up_after_retries(media_app, media_state, channel, media_server):
    url = media_server.add("ME1", PHOTO, "image/jpeg", not_found_first=1000)
    _post_with_media(media_app, channel, [(url, "image/jpeg")])

    for _ in range(MAX_FETCH_ATTEMPTS):
        _reschedule_now(media_state)
        _fetch_round(media_state)

    [row] = _attachments(media_state)
    assert row.fetch_status == "failed"
    assert row.fetch_attempts == MAX_FETCH_ATTEMPTS
    assert "404" in row.omitted_reason
    _reschedule_now(media_state)
    assert _fetch_round(media_state) == 0


@pytest.mark.parametrize(
    ("data", "content_type", "reason"),
    [
        (b"MZ" + bytes(100), "application/x-msdownload", "not accepted"),
        (bytes(100_001), "video/mp4", "larger than this channel's limit"),
    ],
)
def test_refused_media_fails_at_once(media_app, media_state, channel, media_server, data, content_type, reason):
    url = media_server.add("ME1", data, content_type)
    _post_with_media(media_app, channel, [(url, content_type)])

    assert _fetch_round(media_state) == 1

    [row] = _attachments(media_state)
    assert row.fetch_status == "failed"
    assert row.fetch_attempts == 1
    assert row.storage_key is None
    assert reason in row.omitted_reason


def test_credentials_go_only_to_api_host(media_app, media_state, channel, media_server):
    foreign = f"http://localhost:{media_server.port}/2010-04-01/Accounts/{TWILIO_ACCOUNT_SID}/Media/ME1"
    media_server.add("ME1", PHOTO, "image/jpeg")
    _post_with_media(media_app, channel, [(foreign, "image/jpeg")])

    _fetch_round(media_state)

    [row] = _attachments(media_state)
    assert row.fetch_status == "failed"
    assert "not on Twilio's API host" in row.omitted_reason
    assert media_server.requests == []


def test_wrong_credentials_fail_without_retry(media_app, media_state, channel, media_server):
    url = media_server.add("ME1", PHOTO, "image/jpeg")
    media_server.auth_token = "another-token"
    _post_with_media(media_app, channel, [(url, "image/jpeg")])

    _fetch_round(media_state)

    [row] = _attachments(media_state)
    assert row.fetch_status == "failed"
    assert "check the channel's Account SID and auth token" in row.omitted_reason


def test_workers_download_and_publish(media_app, media_state, channel, media_server):
    events: list[dict] = []
    add_publisher(media_state.session_factory, events.extend)
    url = media_server.add("ME1", PHOTO, "image/jpeg")
    workers = Workers(media_state)
    workers.start()
    try:
        # The running webhook worker may claim the webhook before this test's own ingestion
        # pass, which then finds nothing: wait for the attachment row as well as its download.
        _post_with_media(media_app, channel, [(url, "image/jpeg")], "photo attached")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if [row.fetch_status for row in _attachments(media_state)] not in ([], ["pending"]):
                break
            time.sleep(0.1)
    finally:
        workers.stop(timeout=5)

    [row] = _attachments(media_state)
    assert row.fetch_status == "stored"
    updates = [event for event in events if event["type"] == "message.updated"]
    assert updates
    [attachment] = updates[-1]["message"]["attachments"]
    assert attachment["status"] == "stored"
    assert attachment["url"] == f"/api/v1/attachments/{row.id}"


def _reschedule_now(state) -> None:
    """Move every scheduled retry to the past, as if its backoff had passed."""
    with state.session_factory() as session:
        session.execute(
            update(Attachment).where(Attachment.fetch_status == "pending")
            .values(next_fetch_at=utcnow() - timedelta(seconds=1))
        )
        session.commit()


def test_plain_http_media_url_gets_no_credentials(media_server):
    # The API is https in production; an http URL on the same host must not carry the token.
    https_api = media_server.base_url.replace("http://", "https://")
    url = media_server.add("ME1", PHOTO, "image/jpeg")

    with pytest.raises(MediaError, match="not on Twilio's API host") as raised:
        download_twilio_media(url, TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, expected_type="image/jpeg",
                              max_bytes=100_000, filename_stem="image-1", api_base_url=https_api)
    assert not raised.value.transient
    assert media_server.requests == []


def test_stalling_media_host_stops_at_deadline(media_server, monkeypatch):
    # One byte a tenth of a second never lets a read wait out its timeout, so only the
    # deadline of the whole download can end it.
    monkeypatch.setattr(media_module, "DOWNLOAD_DEADLINE_SECONDS", 1.0)
    url = media_server.add("ME1", PHOTO, "image/jpeg", byte_interval=0.1)
    started = time.monotonic()

    with pytest.raises(MediaError, match="did not finish in time") as raised:
        download_twilio_media(url, TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, expected_type="image/jpeg",
                              max_bytes=100_000, filename_stem="image-1", api_base_url=media_server.base_url)

    assert raised.value.transient
    # The whole file would take over 500 seconds.
    assert time.monotonic() - started < 10


@pytest.mark.parametrize(
    ("given", "content_type", "stored"),
    [
        # The type decides how the file may be opened, so the name must not say otherwise.
        ("invoice.pdf.exe", "application/pdf", "invoice.pdf.exe.pdf"),
        ("invoice.exe", "application/pdf", "invoice.exe.pdf"),
        ("photo.html", "image/jpeg", "photo.html.jpg"),
        ("../../etc/passwd", "text/plain", "_.._etc_passwd.txt"),
        ("\u202egpj.exe", "image/jpeg", "_gpj.exe.jpg"),
        # Names whose extension fits their type stay as the customer sent them.
        ("Grace Hopper.vcf", "text/x-vcard", "Grace Hopper.vcf"),
        ("scan.JPEG", "image/jpeg", "scan.JPEG"),
        ("Report 2024.docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
         "Report 2024.docx"),
    ],
)
def test_sender_file_name_keeps_type_extension(media_server, given, content_type, stored):
    url = media_server.add("ME1", b"data of the file", content_type, filename=given)

    media = download_twilio_media(url, TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, expected_type=content_type,
                                  max_bytes=100_000, filename_stem="document-1", api_base_url=media_server.base_url)

    assert media.filename == stored
