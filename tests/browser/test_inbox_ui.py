"""The inbox UI in Chromium against the real service: shortcuts, two agents at once, replay
after a dropped connection, hostile email HTML, retrying replies, channel labels, contrast."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import timedelta
from email.message import EmailMessage
from email.utils import format_datetime

import pytest
from playwright.sync_api import expect
from sqlalchemy import update

from channels.email.parse import parse_email
from gateway.simulate import send_simulated_whatsapp
from gateway.workers import Workers
from inbox.agents import create_agent
from inbox.channel_config import add_channel
from inbox.ingest import ingest_message
from inbox.models import Message, utcnow
from tests.conftest import AGENT_PASSWORD, TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN
from tests.support.twilio_server import TwilioTestServer

pytestmark = pytest.mark.browser

# Records every Socket.IO client the page creates in window.__testSockets, so a test can drop
# and restore the connection. It wraps window.io when the deferred client script defines it.
CAPTURE_SOCKETS = """
(() => {
  const sockets = [];
  let factory;
  window.__testSockets = sockets;
  Object.defineProperty(window, 'io', {
    configurable: true,
    get() { return factory; },
    set(value) {
      factory = typeof value !== 'function' ? value : Object.assign((...args) => {
        const socket = value(...args);
        sockets.push(socket);
        return socket;
      }, value);
    },
  });
})();
"""

# Returns every visible text run on the inbox page (outside the email frames) whose contrast
# with its background is below 4.5:1, by the WCAG 2.x formula. Backgrounds are composed from
# the element's ancestors, so translucent layers count. Disabled controls are exempt (WCAG 1.4.3).
FIND_LOW_CONTRAST = """
() => {
  const parse = (value) => {
    const match = value.match(/rgba?\\(([^)]+)\\)/);
    if (!match) return null;
    const parts = match[1].split(/[\\s,\\/]+/).filter(Boolean).map(Number);
    return { r: parts[0], g: parts[1], b: parts[2], a: parts.length > 3 ? parts[3] : 1 };
  };
  const blend = (top, bottom) => ({
    r: top.r * top.a + bottom.r * (1 - top.a),
    g: top.g * top.a + bottom.g * (1 - top.a),
    b: top.b * top.a + bottom.b * (1 - top.a),
    a: 1,
  });
  const luminance = ({ r, g, b }) => {
    const channel = (value) => {
      const c = value / 255;
      return c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
    };
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b);
  };
  const ratio = (first, second) => {
    const [high, low] = [luminance(first), luminance(second)].sort((x, y) => y - x);
    return (high + 0.05) / (low + 0.05);
  };
  const backgroundOf = (element) => {
    const layers = [];
    for (let node = element; node; node = node.parentElement) {
      const color = parse(getComputedStyle(node).backgroundColor);
      if (color && color.a > 0) layers.push(color);
    }
    let result = { r: 255, g: 255, b: 255, a: 1 };
    for (const layer of layers.reverse()) result = blend(layer, result);
    return result;
  };
  const opacityOf = (element) => {
    let opacity = 1;
    for (let node = element; node; node = node.parentElement) opacity *= Number(getComputedStyle(node).opacity);
    return opacity;
  };
  const check = (element, text, style, failures) => {
    const color = parse(style.color);
    const background = backgroundOf(element);
    const foreground = blend({ ...color, a: color.a * opacityOf(element) }, background);
    const value = ratio(foreground, background);
    if (value < 4.5) {
      failures.push({ text: text.slice(0, 40), ratio: Math.round(value * 100) / 100,
                      color: style.color, element: element.className || element.tagName });
    }
  };

  const failures = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const seen = new Set();
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const element = node.parentElement;
    if (!node.textContent.trim() || !element || seen.has(element)) continue;
    seen.add(element);
    if (element.closest('.visually-hidden, :disabled, [hidden], svg')) continue;
    const rect = element.getBoundingClientRect();
    if (rect.width === 0 || rect.height === 0 || !element.checkVisibility()) continue;
    check(element, node.textContent.trim(), getComputedStyle(element), failures);
  }
  for (const field of document.querySelectorAll('textarea[placeholder], input[placeholder]')) {
    if (field.disabled || !field.checkVisibility() || field.value) continue;
    check(field, `placeholder: ${field.placeholder}`, getComputedStyle(field, '::placeholder'), failures);
  }
  return failures;
}
"""

FRAME_HEIGHTS = """() => [...document.querySelectorAll('iframe.email__frame')].map((frame) => ({
    frame: frame.getBoundingClientRect().height,
    content: frame.contentDocument.body.scrollHeight,
}))"""
FRAMES_FIT_CONTENT = f"() => ({FRAME_HEIGHTS})().every((height) => Math.abs(height.frame - height.content) <= 1)"

EMAIL_SETTINGS = {
    "imap_host": "127.0.0.1",
    "imap_port": 993,
    "imap_username": "support@example.com",
    "imap_password": "not-used-without-workers",
    "smtp_host": "127.0.0.1",
    "smtp_port": 587,
    "smtp_security": "starttls",
}

# Every way an email could try to run script. The sanitizer removes all of them on ingest;
# one test also writes this HTML straight into the database to check the frame on its own.
HOSTILE_HTML = """
<p>Hello, please see the offer below.</p>
<p>This paragraph is long on purpose, so that a narrower window wraps it onto more lines and the
frame has to grow: Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor
incididunt ut labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud exercitation.</p>
<script>window.__pwned = 'script'; parent.__pwned = 'script';</script>
<img src="https://tracker.invalid/pixel.png" onerror="parent.__pwned = 'onerror'">
<img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=" onerror="parent.__pwned = 'onerror'">
<svg onload="parent.__pwned = 'svg'"><circle r="4"></circle></svg>
<p><a href="javascript:parent.__pwned = 'link'">Claim your prize</a></p>
<form action="javascript:parent.__pwned = 'form'"><button>Go</button></form>
<iframe srcdoc="&lt;script&gt;parent.parent.__pwned = 'nested'&lt;/script&gt;"></iframe>
<meta http-equiv="refresh" content="0; url=about:blank">
<p>Regards, Mallory</p>
"""

QUOTED_REPLY = (
    "Thanks, that fixed it.\n"
    "\n"
    "On Mon, 3 Mar 2025 at 10:00, Support <support@example.com> wrote:\n"
    "> Dear Marie,\n"
    "> please restart the router and try again.\n"
)


@pytest.fixture
def twilio():
    """A loopback Twilio API that accepts each message with the status "sent"."""
    with TwilioTestServer(account_sid=TWILIO_ACCOUNT_SID, auth_token=TWILIO_AUTH_TOKEN,
                          initial_status="sent") as server:
        yield server


@pytest.fixture
def config(config, twilio):
    """The shared test config, with Twilio requests going to the loopback test server."""
    return replace(config, twilio_api_base_url=twilio.base_url)


@pytest.fixture
def workers(state, live_server):
    """The outbox dispatcher and mail readers, as `switchboard run` starts them."""
    running = Workers(state)
    running.start()
    yield running
    running.stop(timeout=2)


@pytest.fixture
def second_agent(state):
    with state.session_factory() as session:
        created = create_agent(session, "bob@example.com", "Bob Builder", AGENT_PASSWORD)
        session.commit()
        return created


@pytest.fixture
def email_channel(state):
    """An email channel whose mailbox and SMTP server are never contacted: tests that use it
    run no workers, or disable it first."""
    with state.session_factory() as session:
        channel = add_channel(session, "email", "Support email", "support@example.com", EMAIL_SETTINGS)
        session.commit()
        return channel


def _new_page(browser, color_scheme: str = "light"):
    """Open a page in a fresh context that collects console errors like the `page` fixture."""
    context = browser.new_context(viewport={"width": 1280, "height": 800}, color_scheme=color_scheme)
    page = context.new_page()
    page.console_errors = []
    page.on("console", lambda message: message.type == "error" and page.console_errors.append(message.text))
    page.on("pageerror", lambda error: page.console_errors.append(str(error)))
    return page


def _sign_in(page, base_url: str, email: str) -> None:
    page.goto(base_url + "/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(AGENT_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#live-indicator")).to_contain_text("Live")


def _whatsapp_from(state, config, live_server, number: str, name: str, text: str) -> None:
    send_simulated_whatsapp(state.session_factory, config, live_server.url, number, text, profile_name=name)
    live_server.wait_until_ingested()


def _email_bytes(message_id: str, subject: str, text: str, html: str | None = None,
                 sender: str = "Marie Curie <marie@example.org>", in_reply_to: str | None = None) -> bytes:
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = "Support <support@example.com>"
    mail["Subject"] = subject
    mail["Message-ID"] = f"<{message_id}>"
    if in_reply_to:
        mail["In-Reply-To"] = f"<{in_reply_to}>"
    mail["Date"] = format_datetime(utcnow())
    mail.set_content(text)
    if html is not None:
        mail.add_alternative(html, subtype="html")
    return mail.as_bytes()


def _ingest_email(state, channel_id: int, raw: bytes) -> int:
    with state.session_factory() as session:
        result = ingest_message(session, channel_id, parse_email(raw))
    assert result.message_id is not None
    return result.message_id


def _conversation(page, name: str):
    return page.get_by_role("option", name=re.compile(name))


def _send_reply(page, text: str) -> None:
    page.get_by_role("textbox", name=re.compile("Reply")).fill(text)
    page.get_by_role("button", name="Send").click()
    expect(page.locator("#thread")).to_contain_text(text)


def _unexpected_errors(page, expected: re.Pattern[str]) -> list[str]:
    return [error for error in page.console_errors if not expected.search(error)]


# NOTE: the server's disconnect handler sends the "presence" offline event to the whole agents
# room, the disconnecting socket included. When the page closed the socket itself, Chromium
# sometimes receives that frame after its close frame and logs this error.
LATE_FRAME_AFTER_CLOSE = re.compile(r"^WebSocket connection to '.*' failed: Data frame received after close$")


def _drop_connection(page) -> None:
    page.evaluate("() => window.__testSockets.forEach((socket) => socket.disconnect())")


def _restore_connection(page) -> None:
    page.evaluate("() => window.__testSockets.forEach((socket) => socket.connect())")


def test_shortcuts_move_reply_and_help(page, live_server, state, config, agent, whatsapp_channel):
    _whatsapp_from(state, config, live_server, "+15551230001", "Grace", "First question")
    _whatsapp_from(state, config, live_server, "+15551230002", "Heidi", "Second question")
    _whatsapp_from(state, config, live_server, "+15551230003", "Ivan", "Third question")
    _sign_in(page, live_server.url, agent.email)
    expect(page.get_by_role("option")).to_have_count(3)
    thread_name = page.locator("#thread-title")

    page.keyboard.press("j")
    expect(_conversation(page, "Ivan")).to_have_attribute("aria-selected", "true")
    expect(thread_name).to_have_text("Ivan")

    page.keyboard.press("j")
    page.keyboard.press("j")
    expect(_conversation(page, "Grace")).to_have_attribute("aria-selected", "true")
    page.keyboard.press("j")
    expect(_conversation(page, "Grace")).to_have_attribute("aria-selected", "true")

    page.keyboard.press("k")
    expect(_conversation(page, "Heidi")).to_have_attribute("aria-selected", "true")
    expect(thread_name).to_have_text("Heidi")
    expect(page.locator("#thread")).to_contain_text("Second question")

    reply_box = page.get_by_role("textbox", name="Reply by WhatsApp")
    page.keyboard.press("r")
    expect(reply_box).to_be_focused()
    page.keyboard.type("jk")
    expect(reply_box).to_have_value("jk")
    expect(_conversation(page, "Heidi")).to_have_attribute("aria-selected", "true")

    page.keyboard.press("Escape")
    expect(page.get_by_role("listbox", name="Conversations")).to_be_focused()

    help_dialog = page.get_by_role("dialog", name="Keyboard shortcuts")
    expect(help_dialog).to_be_hidden()
    page.keyboard.press("?")
    expect(help_dialog).to_be_visible()
    expect(help_dialog).to_contain_text("Next conversation")
    page.keyboard.press("Escape")
    expect(help_dialog).to_be_hidden()
    assert page.console_errors == []


def test_colleague_typing_and_reply_appear_live(
    page, browser, live_server, workers, state, config, agent, second_agent, whatsapp_channel, twilio
):
    _whatsapp_from(state, config, live_server, "+15551230000", "Grace", "Where is my order 1234?")
    colleague = _new_page(browser)
    try:
        _sign_in(page, live_server.url, agent.email)
        _sign_in(colleague, live_server.url, second_agent.email)

        presence = colleague.locator("#presence")
        expect(presence).to_be_visible()
        expect(presence).to_have_attribute("title", "Online now: Ada Agent")
        expect(presence).to_contain_text("1 other agent online: Ada Agent")
        expect(page.locator("#presence")).to_have_attribute("title", "Online now: Bob Builder")

        for agent_page in (page, colleague):
            _conversation(agent_page, "Grace").click()
            expect(agent_page.locator("#thread")).to_contain_text("Where is my order 1234?")

        typing = colleague.locator("#thread .typing")
        page.get_by_role("textbox", name="Reply by WhatsApp").fill("Let me check")
        expect(typing).to_have_text("Ada Agent is typing…")
        expect(typing).to_have_attribute("role", "status")
        # The agent who types sees no line about herself.
        expect(page.locator("#thread .typing")).to_be_hidden()

        # Without another keystroke the line goes away after 5 s.
        expect(typing).to_be_hidden(timeout=8000)

        page.get_by_role("textbox", name="Reply by WhatsApp").fill("It left our warehouse this morning.")
        expect(typing).to_have_text("Ada Agent is typing…")
        page.get_by_role("button", name="Send").click()

        expect(colleague.locator("#thread")).to_contain_text("It left our warehouse this morning.")
        # The reply ends the typing line at once, well before the 5 s timeout.
        expect(typing).to_be_hidden(timeout=2000)
        (sent,) = twilio.wait_for(1)
        assert sent["Body"] == "It left our warehouse this morning."

        assert colleague.console_errors == []
    finally:
        colleague.context.close()

    # Bob's page has closed, so Ada no longer sees him online.
    expect(page.locator("#presence")).to_be_hidden()
    assert page.console_errors == []


def test_reconnect_replays_events_missed_before_any_event(page, live_server, state, config, agent, whatsapp_channel):
    _whatsapp_from(state, config, live_server, "+15551230001", "Grace", "Already here before the page")
    page.add_init_script(CAPTURE_SOCKETS)
    _sign_in(page, live_server.url, agent.email)
    expect(page.get_by_role("option")).to_have_count(1)

    # The page has received no live event when its connection drops.
    _drop_connection(page)
    _whatsapp_from(state, config, live_server, "+15551230002", "Heidi", "Sent while the agent was offline")
    page.wait_for_timeout(500)
    expect(_conversation(page, "Heidi")).to_have_count(0)

    _restore_connection(page)
    expect(_conversation(page, "Heidi")).to_be_visible()
    expect(_conversation(page, "Heidi")).to_contain_text("Sent while the agent was offline")
    expect(page.get_by_role("option")).to_have_count(2)
    assert _unexpected_errors(page, LATE_FRAME_AFTER_CLOSE) == []


def test_failed_thread_reloads_after_reconnect(page, live_server, state, config, agent, whatsapp_channel):
    _whatsapp_from(state, config, live_server, "+15551230001", "Grace", "Is anyone there?")
    page.add_init_script(CAPTURE_SOCKETS)
    _sign_in(page, live_server.url, agent.email)

    _drop_connection(page)
    page.route(re.compile(r"/api/v1/conversations/\d+$"), lambda route: route.fulfill(
        status=503, content_type="application/json",
        body='{"error": {"code": "unavailable", "message": "The server is restarting."}}'))
    _conversation(page, "Grace").click()
    expect(page.locator("#thread")).to_contain_text("Could not load this conversation")
    expect(page.locator("#thread")).to_contain_text("The server is restarting.")

    page.unroute(re.compile(r"/api/v1/conversations/\d+$"))
    _restore_connection(page)
    expect(page.locator("#thread")).to_contain_text("Is anyone there?")
    expect(page.locator("#thread")).not_to_contain_text("Could not load this conversation")
    # Chromium logs each failed response, and the 503 above was made on purpose.
    expected = re.compile(rf"status of 503|{LATE_FRAME_AFTER_CLOSE.pattern}")
    assert _unexpected_errors(page, expected) == []


def test_hostile_email_html_runs_no_script(page, live_server, state, agent, email_channel):
    first_id = _ingest_email(state, email_channel.id, _email_bytes(
        "offer-1@example.net", "A special offer", "Hello, please see the offer below.", HOSTILE_HTML,
        sender="Mallory <mallory@example.net>"))
    raw_id = _ingest_email(state, email_channel.id, _email_bytes(
        "offer-2@example.net", "Re: A special offer", "Second copy", "<p>placeholder</p>",
        sender="Mallory <mallory@example.net>", in_reply_to="offer-1@example.net"))
    # The second message skips the sanitizer, so the frame alone has to keep its script from running.
    with state.session_factory() as session:
        session.execute(update(Message).where(Message.id == raw_id).values(html=HOSTILE_HTML))
        session.commit()
    assert first_id != raw_id

    _sign_in(page, live_server.url, agent.email)
    _conversation(page, "Mallory").click()
    frames = page.locator("iframe.email__frame")
    expect(frames).to_have_count(2)
    for index in range(2):
        expect(frames.nth(index)).to_have_attribute("sandbox", "allow-same-origin")
        body = page.frame_locator("iframe.email__frame").nth(index).locator("body")
        expect(body).to_contain_text("Regards, Mallory")

    prize = page.frame_locator("iframe.email__frame").nth(1).get_by_text("Claim your prize")
    prize.click()
    page.wait_for_timeout(1000)
    # Neither the link nor the meta refresh navigated a frame away from the email.
    for index in range(2):
        body = page.frame_locator("iframe.email__frame").nth(index).locator("body")
        expect(body).to_contain_text("Regards, Mallory")

    pwned = page.evaluate("""() => [window.__pwned,
        ...[...document.querySelectorAll('iframe.email__frame')].map((frame) => frame.contentWindow.__pwned)]""")
    assert pwned == [None, None, None]
    expect(page).to_have_url(re.compile(r"#conversation=\d+$"))

    # Each frame is as tall as its email, with no empty band below the text, and it follows
    # the text when a narrower window rewraps it.
    for width in (1280, 900):
        page.set_viewport_size({"width": width, "height": 800})
        page.wait_for_function(FRAMES_FIT_CONTENT, timeout=5000)
        heights = page.evaluate(FRAME_HEIGHTS)
        assert all(abs(height["frame"] - height["content"]) <= 1 for height in heights), heights

    # Chromium logs each script, javascript: URL and refresh that the sandbox or the frame's policy blocked.
    expected = re.compile(
        r"^Blocked script execution in 'about:srcdoc'"
        r"|^Executing inline event handler violates the following Content Security Policy"
        r"|^Running the JavaScript URL violates the following Content Security Policy"
        r"|^Refused to execute the redirect specified via '<meta http-equiv='refresh'"
    )
    assert _unexpected_errors(page, expected) == []


def test_email_snippet_hides_quote_and_header_names_channel(
    page, live_server, state, agent, email_channel, whatsapp_channel, config
):
    _ingest_email(state, email_channel.id, _email_bytes("router-2@example.org", "Router problem", QUOTED_REPLY))
    _whatsapp_from(state, config, live_server, "+15551230001", "Grace", "Hello over WhatsApp")
    _sign_in(page, live_server.url, agent.email)

    marie = _conversation(page, "Marie Curie")
    expect(marie.locator(".conversation__snippet")).to_have_text("Thanks, that fixed it.")
    assert ">" not in marie.get_attribute("aria-label")

    marie.click()
    thread = page.locator("#thread")
    expect(thread.locator(".message__text").first).to_contain_text("Thanks, that fixed it.")
    expect(thread.get_by_text("Show quoted text")).to_be_visible()
    details = thread.locator(".thread__details")
    expect(details.locator(".channel-badge")).to_have_text("Support email")
    expect(details).not_to_contain_text("via")

    _conversation(page, "Grace").click()
    expect(details.locator(".channel-badge")).to_have_text("WhatsApp support")
    expect(details).not_to_contain_text("via")
    assert page.console_errors == []


def test_email_outlook_history_folds_behind_toggle(page, live_server, state, agent, email_channel):
    text = (
        "Danke, jetzt geht es.\n"
        "\n"
        "Von: Support <support@example.com>\n"
        "Gesendet: Montag, 3. März 2025 10:00\n"
        "An: Marie Curie <marie@example.org>\n"
        "Betreff: Router\n"
        "\n"
        "Bitte starten Sie den Router neu.\n"
    )
    _ingest_email(state, email_channel.id, _email_bytes("router-3@example.org", "Router", text))
    _sign_in(page, live_server.url, agent.email)

    _conversation(page, "Marie Curie").click()
    thread = page.locator("#thread")
    quoted = thread.locator(".quoted__text")
    expect(thread.locator(".message__text").first).to_contain_text("Danke, jetzt geht es.")
    expect(quoted).to_be_hidden()

    thread.get_by_text("Show quoted text").click()
    expect(quoted).to_be_visible()
    expect(quoted).to_contain_text("Gesendet: Montag")
    expect(quoted).to_contain_text("Bitte starten Sie den Router neu.")
    assert page.console_errors == []


def test_header_names_channel_without_kind_in_it(page, live_server, state, agent, config):
    with state.session_factory() as session:
        add_channel(session, "whatsapp", "Acme help desk", "+14155238887",
                    {"account_sid": TWILIO_ACCOUNT_SID, "auth_token": TWILIO_AUTH_TOKEN})
        session.commit()
    _whatsapp_from(state, config, live_server, "+15551230001", "Grace", "Hello over WhatsApp")
    _sign_in(page, live_server.url, agent.email)

    _conversation(page, "Grace").click()
    details = page.locator("#thread .thread__details")
    expect(details.locator(".channel-badge")).to_have_text("WhatsApp")
    expect(details.locator(".thread__channel-name")).to_have_text("via Acme help desk")
    assert page.console_errors == []


def test_retrying_reply_shows_attempt_and_reason(
    page, live_server, workers, state, config, agent, whatsapp_channel, twilio
):
    _whatsapp_from(state, config, live_server, "+15551230001", "Grace", "Can you call me back?")
    _sign_in(page, live_server.url, agent.email)
    _conversation(page, "Grace").click()
    expect(page.locator("#thread")).to_contain_text("Can you call me back?")

    # Twilio returns 503 twice: the dispatcher retries after about 2.5-5 s, then 5-10 s.
    twilio.fail_next(503, 20503, "Service Unavailable", times=2)
    _send_reply(page, "We will call you at noon.")
    status = page.locator("#thread .message-row--outbound .message__status")
    retry = status.locator(".message__retry")
    expect(retry).to_have_text(re.compile(
        r"^Retrying \(attempt 2\) — Twilio error 20503: .*Service Unavailable \(HTTP 503\)"))
    expect(retry).to_have_attribute("title", re.compile(r"^Next attempt: .*\d"))
    expect(status).not_to_contain_text("Queued")

    # After a reload the retry comes from the API instead of an event.
    page.reload()
    expect(retry).to_have_text(re.compile(r"^Retrying \(attempt [23]\) — Twilio error 20503"))
    expect(retry).to_have_text(re.compile(r"^Retrying \(attempt 3\)"), timeout=10_000)

    expect(status).to_have_text("Sent", timeout=15_000)
    expect(retry).to_have_count(0)
    assert len(twilio.wait_for(3)) == 3

    # A permanent error shows the red error and no retry line.
    twilio.fail_next(400, 21211, "Invalid 'To' Phone Number")
    _send_reply(page, "Sorry, one more thing.")
    failed_status = page.locator("#thread .message-row--outbound").last.locator(".message__status")
    expect(failed_status).to_contain_text("Failed to send")
    expect(failed_status.locator(".message__error")).to_contain_text("Invalid 'To' Phone Number")
    expect(failed_status.locator(".message__retry")).to_have_count(0)
    assert page.console_errors == []


@pytest.mark.parametrize("color_scheme", ["light", "dark"])
def test_text_contrast_meets_wcag_aa(
    browser, live_server, workers, state, config, agent, whatsapp_channel, twilio, color_scheme
):
    # The email channel may not send for an hour, so its replies stay queued and no mail
    # server is contacted.
    with state.session_factory() as session:
        help_desk = add_channel(session, "email", "Acme help desk", "help@example.com", EMAIL_SETTINGS)
        help_desk.send_not_before = utcnow() + timedelta(hours=1)
        session.commit()
        help_desk_id = help_desk.id
    _ingest_email(state, help_desk_id, _email_bytes("router-2@example.org", "Router problem", QUOTED_REPLY))
    _whatsapp_from(state, config, live_server, "+15551230001", "Grace", "Where is my parcel?")
    _whatsapp_from(state, config, live_server, "+15551230002", "Heidi", "Unread question")

    page = _new_page(browser, color_scheme)
    try:
        _sign_in(page, live_server.url, agent.email)
        thread = page.locator("#thread")

        _conversation(page, "Grace").click()
        _send_reply(page, "This reply was sent.")
        expect(thread.locator(".message__status").last).to_have_text("Sent")
        twilio.fail_next(400, 21211, "Invalid 'To' Phone Number")
        _send_reply(page, "This reply failed for good.")
        expect(thread.locator(".message__status").last).to_contain_text("Failed to send")
        twilio.fail_next(503, 20503, "Service Unavailable", times=20)
        _send_reply(page, "This reply is retrying.")
        expect(thread.locator(".message__retry")).to_contain_text("Retrying (attempt")
        for text in ("Today", "just now"):
            expect(thread).to_contain_text(text)
        # The key hint shows only where the reply box has room for it next to its label.
        page.set_viewport_size({"width": 1920, "height": 800})
        expect(page.locator("#reply-hint")).to_be_visible()
        expect(page.locator("#live-indicator")).to_have_text("Live")
        assert page.evaluate(FIND_LOW_CONTRAST) == []
        page.set_viewport_size({"width": 1280, "height": 800})

        _conversation(page, "Marie Curie").click()
        expect(thread.locator(".thread__channel-name")).to_have_text("via Acme help desk")
        _send_reply(page, "This reply is queued.")
        expect(thread.locator(".message__status").last).to_have_text("Queued")
        # The hovered row shows its time and snippet on the hover background.
        _conversation(page, "Heidi").hover()
        assert page.evaluate(FIND_LOW_CONTRAST) == []
        assert page.console_errors == []
    finally:
        page.context.close()
