"""Screenshots of the main screens for the docs, taken from demo data in a temporary database.

Starts the service on a loopback port with a fresh SQLite database, fills it through the same
paths users take (signed WhatsApp webhooks, parsed email, the JSON API), signs in with
Debian's Chromium and saves one PNG per screen. The Reports screens come from a second
workspace, whose 30 days of history are written straight into its database.

    .venv/bin/python -m tests.support.screenshots [OUTPUT_DIR]   (default docs/screenshots)
"""

from __future__ import annotations

import argparse
import logging
import random
import threading
import tempfile
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from pathlib import Path
from zoneinfo import ZoneInfo

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
from inbox.activity import Action
from inbox.ingest import ingest_message
from inbox.models import (
    Agent,
    Channel,
    Contact,
    Conversation,
    ConversationActivity,
    Message,
    ProactiveSend,
    Role,
    SatisfactionAnswer,
)
from inbox.teams import create_team
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


# The Reports workspace: its time zone, the days of history, and the seed that makes every
# run draw the same history relative to the day it runs.
REPORT_ZONE = "Europe/Berlin"
REPORT_DAYS = 30
REPORT_SEED = 2026
REPORT_FIRST_NAMES = ["Lena", "Marcus", "Priya", "Rafael", "Sofia", "Tom", "Ana", "Jonas", "Mei", "Omar",
                      "Clara", "Felix", "Yara", "Nils", "Aisha", "Luca", "Ines", "Karl", "Hana", "Pedro"]
REPORT_LAST_NAMES = ["Vogel", "Reed", "Shah", "Costa", "Marino", "Becker", "Lima", "Weber", "Chen", "Haddad",
                     "Novak", "Berg", "Rossi", "Okafor", "Jensen", "Silva", "Keller", "Sato", "Dubois", "Moreau"]
REPORT_TEXTS = ["Where is my parcel?", "Can I change the delivery address?", "The invoice is missing our VAT number.",
                "I was charged twice for one order.", "The item arrived damaged.", "How do I return this?"]


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
                _capture_reports(browser, output)
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


def _capture_reports(browser, output: Path) -> None:
    """Save the Reports page: the backlog at the top, the trend of 30 days, and the satisfaction section."""
    workdir = Path(tempfile.mkdtemp(prefix="switchboard-report-screens-"))
    config = Config(database_url=f"sqlite:///{workdir / 'reports.db'}", secret_key="screens",
                    instance_dir=str(workdir), time_zone=REPORT_ZONE)
    app = create_app(config)
    state = get_state(app)
    upgrade_database(state.engine)
    _fill_report_history(state, datetime.now(timezone.utc))

    with LiveServer(app) as server:
        context = browser.new_context(viewport=VIEWPORT)
        page = context.new_page()
        page.goto(f"{server.url}/login?next=/reports")
        page.get_by_label("Email").fill("mia@shop.example")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("heading", name="Backlog, trend and satisfaction", level=1)).to_be_visible()
        _settle(page)
        page.screenshot(path=str(output / "reports.png"))

        page.goto(f"{server.url}/reports?days={REPORT_DAYS}")
        page.locator("#trend-heading").evaluate("(heading) => heading.closest('section').scrollIntoView()")
        _settle(page)
        page.screenshot(path=str(output / "reports-trend.png"))

        satisfaction = page.locator("section", has=page.get_by_role("heading", name="Customer satisfaction"))
        satisfaction.screenshot(path=str(output / "reports-satisfaction.png"))
        context.close()
    state.engine.dispose()


def _fill_report_history(state, now: datetime) -> None:
    """Write 30 days of conversations up to ``now``: replies, resolutions and satisfaction answers.

    The rows go straight into the database with their times in the past, which no path that
    users take can do. A seeded random generator draws the same history on every run.
    """
    draw = random.Random(REPORT_SEED)
    zone = ZoneInfo(REPORT_ZONE)
    with state.session_factory() as session:
        create_agent(session, "mia@shop.example", "Mia Manager", PASSWORD, Role.MANAGER.value)
        agents = [create_agent(session, email, name, PASSWORD) for email, name in [
            ("ada@shop.example", "Ada Lovelace"), ("bob@shop.example", "Bob Okafor"), ("chen@shop.example", "Chen Wei"),
        ]]
        whatsapp = add_channel(session, "whatsapp", "WhatsApp support", "+14155238886",
                               {"account_sid": "AC" + "0" * 32, "auth_token": "demo-auth-token"})
        email = add_channel(session, "email", "Support mailbox", SUPPORT_ADDRESS, {
            "imap_host": "127.0.0.1", "imap_port": 993, "imap_username": SUPPORT_ADDRESS,
            "imap_password": "unused", "imap_ssl": False, "smtp_host": "127.0.0.1", "smtp_port": 587,
            "smtp_security": "starttls",
        })
        session.flush()
        teams = [create_team(session, "Delivery", [agents[0].id, agents[1].id]),
                 create_team(session, "Billing", [agents[1].id, agents[2].id])]
        session.flush()

        today = now.astimezone(zone).date()
        for days_ago in range(REPORT_DAYS, -1, -1):
            day = today - timedelta(days=days_ago)
            # More customers write on weekdays, and a few more each week.
            count = (6 if day.weekday() >= 5 else 12) + (REPORT_DAYS - days_ago) // 5 + draw.randint(0, 6)
            for _ in range(count):
                local = datetime(day.year, day.month, day.day, draw.choice(range(7, 22)), draw.randrange(60), tzinfo=zone)
                created = local.astimezone(timezone.utc)
                if created < now:
                    channel = whatsapp if draw.random() < 0.65 else email
                    _add_report_conversation(session, draw, channel, agents, teams, created, now)
        session.commit()


def _add_report_conversation(session, draw: random.Random, channel: Channel, agents: list[Agent],
                             teams: list, created: datetime, now: datetime) -> None:
    """Write one conversation created at ``created``, and what happened to it until ``now``."""
    contact = Contact(name=f"{draw.choice(REPORT_FIRST_NAMES)} {draw.choice(REPORT_LAST_NAMES)}", created_at=created)
    assignee = draw.choice(agents) if draw.random() < 0.65 else None
    conversation = Conversation(
        channel=channel, contact=contact, status="open",
        priority=draw.choices(["urgent", "high", "normal", "low"], weights=[8, 20, 57, 15])[0],
        team_id=draw.choices([teams[0].id, teams[1].id, None], weights=[40, 35, 25])[0], assignee=assignee,
        subject=draw.choice(REPORT_TEXTS) if channel.kind == "email" else None,
        created_at=created, last_message_at=created, last_inbound_at=created, updated_at=created,
    )
    session.add(conversation)
    session.flush()
    _add_report_message(session, conversation, "inbound", created, None, draw.choice(REPORT_TEXTS))

    # Most conversations get a first reply within the hour and some much later, while a few get none.
    if draw.random() < 0.08:
        return
    agent = assignee or draw.choice(agents)
    replied = created + timedelta(minutes=min(draw.lognormvariate(3.2, 0.9), 48 * 60))
    if replied >= now:
        return
    _add_report_message(session, conversation, "outbound", replied, agent, "Thanks for writing, I am looking into it.")

    age = now - created
    if draw.random() > (0.93 if age > timedelta(days=2) else 0.5):
        if draw.random() < 0.3:
            _add_report_status(session, conversation, agent, replied + timedelta(minutes=5), "pending")
        return
    resolved = replied + timedelta(hours=draw.uniform(0.5, 30))
    if resolved >= now:
        return
    _add_report_status(session, conversation, agent, resolved, "resolved")

    # About half the customers answer the satisfaction question sent at resolution.
    answered = resolved + timedelta(minutes=draw.uniform(10, 360))
    if draw.random() > 0.5 or answered >= now:
        return
    question_message = _add_report_message(session, conversation, "outbound", resolved, None,
                                           "How did we do? Answer with a number from 1 to 5.")
    question = ProactiveSend(
        template_id=1, template_name="How did we do?", conversation_id=conversation.id,
        occurrence_key=f"resolved:{conversation.id}", trigger="resolved", channel=channel.kind, result="sent",
        message_id=question_message.id, created_at=resolved, updated_at=resolved,
    )
    session.add(question)
    if draw.random() < 0.85:
        kind, score = "rating", draw.choices([5, 4, 3, 2, 1], weights=[45, 30, 12, 7, 6])[0]
        text = str(score)
    else:
        kind, score = "yes_no", int(draw.random() < 0.8)
        text = "yes" if score else "no"
    answer_message = _add_report_message(session, conversation, "inbound", answered, None, text)
    session.add(SatisfactionAnswer(
        conversation_id=conversation.id, agent_id=agent.id, question_id=question.id, message_id=answer_message.id,
        kind=kind, score=score, answer=text, created_at=answered,
    ))
    session.flush()


def _add_report_message(session, conversation: Conversation, direction: str, when: datetime,
                        agent: Agent | None, text: str) -> Message:
    conversation.last_message_at = max(conversation.last_message_at, when)
    if direction == "inbound":
        conversation.last_inbound_at = when
    message = Message(conversation=conversation, channel=conversation.channel, direction=direction, agent=agent,
                      contact=conversation.contact if direction == "inbound" else None, text=text, created_at=when)
    session.add(message)
    session.flush()
    return message


def _add_report_status(session, conversation: Conversation, agent: Agent, when: datetime, status: str) -> None:
    session.add(ConversationActivity(conversation_id=conversation.id, agent=agent, action=Action.STATUS,
                                     details={"from": conversation.status, "to": status}, created_at=when))
    conversation.status = status
    conversation.updated_at = when


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
