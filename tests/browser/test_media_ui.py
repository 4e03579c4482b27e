"""WhatsApp media in the thread: shown as downloading, then inline once the workers fetched it."""

from __future__ import annotations

import base64
import dataclasses
import re
import threading

import pytest
from playwright.sync_api import expect
from twilio.request_validator import RequestValidator

from gateway import create_app, get_state
from gateway.media import MediaFetcher
from gateway.simulate import build_message_form
from inbox.agents import create_agent
from inbox.channel_config import add_channel
from tests.conftest import AGENT_PASSWORD, TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN
from tests.support.live import LiveServer
from tests.support.twilio_media_server import TwilioMediaServer

pytestmark = pytest.mark.browser

# A 1x1 red PNG.
PIXEL = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
)


def test_media_appears_when_downloaded(page, config):
    with TwilioMediaServer(TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN) as media_server:
        app = create_app(dataclasses.replace(config, twilio_api_base_url=media_server.base_url))
        state = get_state(app)
        with state.session_factory() as session:
            create_agent(session, "ada@example.com", "Ada Agent", AGENT_PASSWORD)
            channel = add_channel(session, "whatsapp", "WhatsApp support", "+14155238886", {
                "account_sid": TWILIO_ACCOUNT_SID, "auth_token": TWILIO_AUTH_TOKEN,
                "max_attachment_bytes": 50_000,
            })
            session.commit()

        photo = media_server.add("ME1", PIXEL, "image/png")
        video = media_server.add("ME2", bytes(60_000), "video/mp4")
        form = build_message_form(channel, "+15551230000", "Here is the damage", "Grace")
        form.update({"NumMedia": "2", "MediaUrl0": photo, "MediaContentType0": "image/png",
                     "MediaUrl1": video, "MediaContentType1": "video/mp4"})

        with LiveServer(app) as server:
            path = f"/webhooks/twilio/{channel.id}/messages"
            signature = RequestValidator(TWILIO_AUTH_TOKEN).compute_signature(server.url + path, form)
            response = app.test_client().post(
                path, data=form, headers={"X-Twilio-Signature": signature}, base_url=server.url
            )
            assert response.status_code == 200

            page.goto(server.url + "/login")
            page.get_by_label("Email").fill("ada@example.com")
            page.get_by_label("Password").fill(AGENT_PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            expect(page.locator("#live-indicator")).to_contain_text("Live")
            page.get_by_role("option", name=re.compile("Grace")).click()

            attachments = page.get_by_role("list", name="Attachments")
            expect(attachments).to_contain_text("Downloading…")

            assert MediaFetcher(state, threading.Event()).fetch_due() == 2

            # The message.updated event replaces the placeholders without a reload.
            thumbnail = attachments.locator("img.attachment__thumbnail")
            expect(thumbnail).to_have_count(1)
            page.wait_for_function(
                "() => document.querySelector('img.attachment__thumbnail')?.naturalWidth === 1"
            )
            expect(attachments).not_to_contain_text("Downloading…")
            expect(attachments).to_contain_text("video-2.mp4")
            expect(attachments).to_contain_text("larger than this channel's limit")

        assert page.console_errors == []
        state.engine.dispose()
