"""Steps of the browser tests that reach a conversation in the inbox."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from tests.conftest import AGENT_PASSWORD


def open_conversation(page: Page, base_url: str, email: str, contact: str, latest_text: str) -> None:
    """Sign in as the agent with ``email`` and open the conversation of ``contact``.

    Returns once the thread shows ``latest_text``, the text of a message in it.
    """
    page.goto(base_url + "/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(AGENT_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("option", name=re.compile(re.escape(contact))).click()
    expect(page.locator("#thread")).to_contain_text(latest_text)
