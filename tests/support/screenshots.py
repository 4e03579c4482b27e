"""Screenshots of the main screens for the docs, taken from demo data in a temporary database.

Starts the service on a loopback port with a fresh SQLite database, fills it through the same
paths users take (signed WhatsApp webhooks, parsed email, the JSON API), signs in with
Debian's Chromium and saves one PNG per screen.

    .venv/bin/python -m tests.support.screenshots [OUTPUT_DIR]   (default docs/screenshots)
"""

from __future__ import annotations

import argparse
import logging
import threading
import tempfile
from email.message import EmailMessage
from pathlib import Path

import requests
from playwright.sync_api import Page, expect, sync_playwright

from channels.email.parse import parse_email
from gateway import create_app, get_state
from gateway.config import Config
from gateway.database import upgrade_database
from gateway.simulate import send_simulated_whatsapp
from gateway.webhook_worker import WebhookWorker
from inbox.agents import create_agent, create_api_token
from inbox.channel_config import add_channel
from inbox.ingest import ingest_message
from inbox.models import Agent, Role
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.support.live import LiveServer

PASSWORD = "demo-password-1"
SUPPORT_ADDRESS = "support@shop.example"
VIEWPORT = {"width": 1440, "height": 900}
PHONE_VIEWPORT = {"width": 420, "height": 900}

WHATSAPP_CUSTOMERS = [
    ("+4915112345678", "Lena Vogel", ["Hi! My order 48213 says delivered but nothing arrived 📦",
                                      "The tracking page shows it was left at the door."]),
    ("+14155550123", "Marcus Reed", ["Can I change the delivery address for order 48377?"]),
    ("+447700900123", "Priya Shah", ["The jacket I got is the wrong size. How do I swap it?"]),
    ("+5511987654321", "Rafael Costa", ["Obrigado! One more question about the invoice."]),
]

EMAILS = [
    ("Sofia Marino <sofia@example.it>", "Refund for a cancelled order",
     "Hello,\n\nI cancelled order 47990 two weeks ago and have not seen the refund yet.\n"
     "Could you check where it is?\n\nThanks,\nSofia"),
    ("Tom Becker <tom.becker@example.de>", "Invoice with VAT number",
     "Hi,\n\nplease send the invoice for order 48101 with our VAT number DE123456789.\n\nTom"),
    ("Ana Lima <ana@example.com.br>", "Damaged packaging",
     "The box arrived crushed, the product seems fine. Just letting you know.\n\nAna"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", nargs="?", default="docs/screenshots", help="folder for the PNG files")
    args = parser.parse_args()
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)

    workdir = Path(tempfile.mkdtemp(prefix="switchboard-screens-"))
    config = Config(database_url=f"sqlite:///{workdir / 'demo.db'}", secret_key="screens",
                    instance_dir=str(workdir))
    app = create_app(config)
    state = get_state(app)
    upgrade_database(state.engine)

    with LiveServer(app) as server:
        token = _fill_demo_data(state, config, server.url)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            try:
                _capture(browser, server.url, output, token)
            finally:
                browser.close()
    state.engine.dispose()
    print(f"screenshots written to {output}")


def _fill_demo_data(state, config: Config, base_url: str) -> str:
    """Create people, channels and conversations, and return the admin's API token."""
    with state.session_factory() as session:
        manager = create_agent(session, "maya@shop.example", "Maya Manager", PASSWORD, Role.ADMIN.value)
        create_agent(session, "ada@shop.example", "Ada Lovelace", PASSWORD)
        create_agent(session, "bob@shop.example", "Bob Okafor", PASSWORD)
        whatsapp = add_channel(session, "whatsapp", "WhatsApp", "+14155238886",
                               {"account_sid": "AC" + "0" * 32, "auth_token": "demo-auth-token"})
        email = add_channel(session, "email", "Support mail", SUPPORT_ADDRESS, {
            "imap_host": "127.0.0.1", "imap_port": 993, "imap_username": SUPPORT_ADDRESS,
            "imap_password": "unused", "imap_ssl": False, "smtp_host": "127.0.0.1", "smtp_port": 587,
            "smtp_security": "starttls",
        })
        session.flush()
        token = create_api_token(session, manager, "screenshots")
        whatsapp_id, email_id = whatsapp.id, email.id
        session.commit()

    for number, name, texts in WHATSAPP_CUSTOMERS:
        for text in texts:
            send_simulated_whatsapp(state.session_factory, config, base_url, number, text,
                                    channel_id=whatsapp_id, profile_name=name)
    # The webhooks wait as pending payloads. No worker runs here, so they are stored now.
    WebhookWorker(state, threading.Event()).ingest_all()
    for index, (sender, subject, text) in enumerate(EMAILS):
        mail = EmailMessage()
        mail["From"] = sender
        mail["To"] = SUPPORT_ADDRESS
        mail["Subject"] = subject
        mail["Message-ID"] = f"<demo-{index}@mail.example>"
        mail.set_content(text)
        with state.session_factory() as session:
            ingest_message(session, email_id, parse_email(mail.as_bytes()))

    api = requests.Session()
    api.headers["Authorization"] = f"Bearer {token}"
    conversations = api.get(f"{base_url}/api/v1/conversations", timeout=10).json()["items"]
    by_name = {item["contact"]["name"]: item["id"] for item in conversations}
    with state.session_factory() as session:
        agents = {agent.name: agent.id for agent in session.query(Agent)}
    changes = {
        "Lena Vogel": {"priority": "high", "assignee_id": agents["Ada Lovelace"], "add_labels": ["delivery"]},
        "Marcus Reed": {"add_labels": ["address change"], "assignee_id": agents["Bob Okafor"]},
        "Sofia Marino": {"priority": "urgent", "add_labels": ["refund"]},
        "Rafael Costa": {"status": "pending"},
    }
    for name, change in changes.items():
        api.patch(f"{base_url}/api/v1/conversations/{by_name[name]}", json=change, timeout=10).raise_for_status()
    api.post(f"{base_url}/api/v1/conversations/{by_name['Lena Vogel']}/messages", timeout=10, json={
        "text": "Hi Lena, sorry about that! I've asked the carrier for the delivery photo and will get back to you today.",
    }).raise_for_status()
    # Administrative changes through the API, so the audit log has entries to show.
    api.post(f"{base_url}/api/v1/teams", timeout=10, json={
        "name": "Billing", "agent_ids": [agents["Ada Lovelace"], agents["Bob Okafor"]],
    }).raise_for_status()
    api.post(f"{base_url}/api/v1/agents", timeout=10, json={
        "name": "Chen Wei", "email": "chen@shop.example", "role": "agent", "password": "first-day-password",
    }).raise_for_status()
    api.put(f"{base_url}/api/v1/agents/{agents['Bob Okafor']}/role", json={"role": "manager"},
            timeout=10).raise_for_status()
    api.post(f"{base_url}/api/v1/conversations/{by_name['Lena Vogel']}/notes", timeout=10, json={
        "text": "@Ada Lovelace the carrier confirmed a safe-place delivery; please check the photo before refunding.",
    }).raise_for_status()
    return token


def _capture(browser, base_url: str, output: Path, token: str) -> None:
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.goto(f"{base_url}/login")
    page.screenshot(path=str(output / "login.png"))

    _sign_in(page)

    page.locator("#conversation-list").get_by_text("Lena Vogel").first.click()
    expect(page.locator("#thread")).to_contain_text("delivery photo")
    _settle(page)
    page.screenshot(path=str(output / "inbox.png"))

    page.keyboard.press("/")
    page.keyboard.type("refund")
    page.keyboard.press("Enter")
    expect(page.locator("#conversation-list")).to_contain_text("Sofia Marino")
    _settle(page)
    page.screenshot(path=str(output / "search.png"))
    page.keyboard.press("Escape")

    _capture_phone(browser, base_url, output)

    page.locator("#conversation-list").get_by_text("Sofia Marino").first.click()
    expect(page.locator("#thread")).to_contain_text("refund")
    _settle(page)
    page.screenshot(path=str(output / "inbox-email.png"))

    for name, path in [
        ("update-templates", "/updates"),
        ("update-log", "/updates/log"),
        ("agents", "/admin/agents"),
        ("teams", "/admin/teams"),
        ("audit-log", "/admin/audit"),
        ("account", "/account"),
        ("channels", "/channels"),
    ]:
        page.goto(base_url + path)
        _settle(page)
        page.screenshot(path=str(output / f"{name}.png"))
    context.close()


def _capture_phone(browser, base_url: str, output: Path) -> None:
    """Save the conversation list and an open conversation at a phone's width."""
    context = browser.new_context(viewport=PHONE_VIEWPORT)
    page = context.new_page()
    page.goto(f"{base_url}/login")
    _sign_in(page)
    _settle(page)
    page.screenshot(path=str(output / "inbox-phone.png"))

    page.locator("#conversation-list").get_by_text("Lena Vogel").first.click()
    expect(page.locator("#thread")).to_contain_text("delivery photo")
    _settle(page)
    page.screenshot(path=str(output / "thread-phone.png"))
    context.close()


def _sign_in(page: Page) -> None:
    """Sign in as the demo manager on the open sign-in page and wait for the live inbox."""
    page.get_by_label("Email").fill("maya@shop.example")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#live-indicator")).to_contain_text("Live")


def _settle(page: Page) -> None:
    """Wait until the page stops loading data, so no screenshot shows a spinner."""
    page.wait_for_load_state("networkidle")
    page.wait_for_timeout(300)


if __name__ == "__main__":
    main()
