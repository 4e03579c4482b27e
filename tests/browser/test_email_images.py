"""Remote images in customers' HTML mail, in Chromium: hidden behind "Show images", HTTP or HTTPS."""

from __future__ import annotations

import base64

import pytest
from playwright.sync_api import expect

from tests.browser.test_inbox_ui import (  # noqa: F401 (email_channel is a fixture)
    _conversation,
    _email_bytes,
    _ingest_email,
    _sign_in,
    email_channel,
)

pytestmark = pytest.mark.browser

# A 1x1 PNG that the route below returns, so no request leaves the machine.
PIXEL = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="
)
NEWSLETTER = (
    '<p>Our new shop logo:</p><img src="http://img.example/logo.png" alt="Shop logo">'
    '<p>And the parcel:</p><img src="https://img.example/parcel.png" alt="Parcel photo">'
)


def test_remote_images_hidden_until_shown(page, live_server, state, agent, email_channel):
    _ingest_email(state, email_channel.id, _email_bytes(
        "images-1@example.org", "Photos", "Our new shop logo and the parcel.", NEWSLETTER))
    requested: list[str] = []

    def fulfill(route):
        requested.append(route.request.url)
        route.fulfill(status=200, content_type="image/png", body=PIXEL)

    page.route("**://img.example/**", fulfill)
    _sign_in(page, live_server.url, agent.email)
    _conversation(page, "Marie").click()
    body = page.frame_locator("iframe.email__frame").locator("body")

    # Both images, the plain-HTTP one included, show as labelled placeholders, and nothing loads.
    expect(body.locator(".remote-image")).to_have_text(["Shop logo", "Parcel photo"])
    expect(page.locator(".email__note")).to_have_text("2 remote images hidden.")
    assert requested == []

    # Shown, the plain-HTTP image is requested over HTTPS, which the page's policy allows.
    page.get_by_role("button", name="Show images").click()
    images = page.frame_locator("iframe.email__frame").locator("img")
    expect(images).to_have_count(2)
    expect(images.nth(0)).to_have_attribute("src", "https://img.example/logo.png")
    expect(images.nth(1)).to_have_attribute("src", "https://img.example/parcel.png")
    for index in range(2):
        expect(images.nth(index)).to_have_js_property("naturalWidth", 1)
    assert sorted(requested) == ["https://img.example/logo.png", "https://img.example/parcel.png"]
    assert page.console_errors == []
