"""Long replies on a Meta Cloud API channel go out in parts of Meta's 4,096-character limit,
and files go out uploaded to the Cloud API first, each as a message of its own kind."""

from __future__ import annotations

import requests

from channels.whatsapp.parts import utf16_length
from tests.gateway.test_meta_flow import (  # noqa: F401 - fixtures
    CUSTOMER,
    AgentClient,
    _dispatch,
    _make_due,
    _message,
    _reply_to_new_customer,
    _report,
    channel_and_token,
    meta_app,
    meta_server,
    service,
)
from tests.support.meta_server import status

LONG_TEXT = " ".join(f"Step {n}: check the parcel 📦 and its label." for n in range(200))


def test_long_meta_reply_goes_in_parts(meta_app, meta_server, service, channel_and_token):
    channel_id, token = channel_and_token
    agent = AgentClient(service.url, token)
    conversation_id, reply_id = _reply_to_new_customer(meta_server, service, channel_id, agent, LONG_TEXT)

    sent_count = _dispatch(meta_app)

    sent = meta_server.wait_for_messages(sent_count)
    bodies = [message["text"]["body"] for message in sent]
    assert len(bodies) >= 2
    assert all(utf16_length(body) <= 4096 for body in bodies)
    assert " ".join(bodies).split() == LONG_TEXT.split()
    for message in sent:
        _report(meta_server, service, channel_id, status(message["id"], "delivered", CUSTOMER))
    reply = _message(agent, conversation_id, reply_id)
    assert [part["provider_message_id"] for part in reply["parts"]] == [message["id"] for message in sent]
    assert reply["delivery_status"] == "delivered"


PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
PDF = b"%PDF-1.4\n% invoice\n%%EOF\n"


def _reply_with_files(service, agent: AgentClient, conversation_id: int, text: str, files: list) -> requests.Response:
    return requests.post(
        f"{service.url}/api/v1/conversations/{conversation_id}/messages",
        data={"text": text}, files=[("attachments", file) for file in files],
        headers=agent.headers, timeout=10,
    )


def _greeted_customer(meta_app, meta_server, service, channel_and_token) -> tuple[int, AgentClient, int]:
    """Return the channel, the agent and a conversation whose first reply was sent."""
    channel_id, token = channel_and_token
    agent = AgentClient(service.url, token)
    conversation_id, _ = _reply_to_new_customer(meta_server, service, channel_id, agent, "Hello")
    _dispatch(meta_app)
    return channel_id, agent, conversation_id


def test_meta_files_uploaded_then_sent(meta_app, meta_server, service, channel_and_token):
    channel_id, agent, conversation_id = _greeted_customer(meta_app, meta_server, service, channel_and_token)

    response = _reply_with_files(
        service, agent, conversation_id, "Here is the label.",
        [("label.png", PNG, "image/png"), ("invoice.pdf", PDF, "application/pdf")],
    )
    assert response.status_code == 201, response.text
    reply_id = response.json()["id"]
    while _dispatch(meta_app):
        pass

    label, invoice = meta_server.uploads
    assert (label.filename, label.content_type, label.data) == ("label.png", "image/png", PNG)
    assert (invoice.filename, invoice.content_type, invoice.data) == ("invoice.pdf", "application/pdf", PDF)
    # The text rides as the image's caption; the PDF follows as a document with its name.
    greeting, image, document = meta_server.wait_for_messages(3)
    assert image["type"] == "image"
    assert image["image"] == {"id": label.media_id, "caption": "Here is the label."}
    assert document["type"] == "document"
    assert document["document"] == {"id": invoice.media_id, "filename": "invoice.pdf"}
    assert image["to"] == document["to"] == greeting["to"]

    for message in (image, document):
        _report(meta_server, service, channel_id, status(message["id"], "delivered", CUSTOMER))
    reply = _message(agent, conversation_id, reply_id)
    assert [part["provider_message_id"] for part in reply["parts"]] == [image["id"], document["id"]]
    assert reply["delivery_status"] == "delivered"


def test_meta_audio_without_caption(meta_app, meta_server, service, channel_and_token):
    _, agent, conversation_id = _greeted_customer(meta_app, meta_server, service, channel_and_token)

    response = _reply_with_files(
        service, agent, conversation_id, "Listen to this.", [("note.ogg", b"OggS" + b"\x00" * 40, "audio/ogg")],
    )
    assert response.status_code == 201, response.text
    while _dispatch(meta_app):
        pass

    _, text, audio = meta_server.wait_for_messages(3)
    assert text["text"]["body"] == "Listen to this."
    (upload,) = meta_server.uploads
    assert audio["type"] == "audio"
    assert audio["audio"] == {"id": upload.media_id}


def test_meta_upload_outage_is_retried(meta_app, meta_server, service, channel_and_token):
    channel_id, agent, conversation_id = _greeted_customer(meta_app, meta_server, service, channel_and_token)
    meta_server.fail_uploads = 1

    response = _reply_with_files(service, agent, conversation_id, "", [("label.png", PNG, "image/png")])
    assert response.status_code == 201, response.text
    reply_id = response.json()["id"]
    _dispatch(meta_app)
    assert meta_server.uploads == []
    assert _message(agent, conversation_id, reply_id)["delivery_status"] == "queued"

    _make_due(meta_app)
    _dispatch(meta_app)
    (upload,) = meta_server.uploads
    _, image = meta_server.wait_for_messages(2)
    assert image["image"] == {"id": upload.media_id}
    _report(meta_server, service, channel_id, status(image["id"], "delivered", CUSTOMER))
    assert _message(agent, conversation_id, reply_id)["delivery_status"] == "delivered"


def test_meta_large_image_rejected(meta_app, meta_server, service, channel_and_token):
    channel_id, token = channel_and_token
    agent = AgentClient(service.url, token)
    conversation_id, _ = _reply_to_new_customer(meta_server, service, channel_id, agent, "Hello")

    response = _reply_with_files(
        service, agent, conversation_id, "the photo", [("photo.jpg", b"\xff\xd8" + b"\x00" * (6 * 1024 * 1024), "image/jpeg")],
    )

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["field"] == "attachments"
    assert "5 MB" in error["message"]
