"""Read-only monospace fields in Chromium (a new API token, a reset link) show every glyph.

Chromium clips the text of an <input> to the used font's ascent plus descent, whatever the
line-height or the field's height, so a glyph that reaches past the font's descent loses
its lower part. An underscore is a thin line at that depth and vanishes entirely.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from inbox.models import Role
from tests.browser.test_inbox_ui import _sign_in
from tests.support.conversations import add_agent

pytestmark = pytest.mark.browser

# How far the value's glyphs, with an underscore added, reach above and below the baseline in
# the field's own font, against the font's ascent and descent, in CSS pixels, measured on a
# canvas.
GLYPH_EXTENT = """(input) => {
  const style = getComputedStyle(input);
  const context = document.createElement('canvas').getContext('2d');
  context.font = `${style.fontStyle} ${style.fontWeight} ${style.fontSize} ${style.fontFamily}`;
  const metrics = context.measureText(`${input.value}_`);
  return {
    inkAscent: metrics.actualBoundingBoxAscent, inkDescent: metrics.actualBoundingBoxDescent,
    fontAscent: metrics.fontBoundingBoxAscent, fontDescent: metrics.fontBoundingBoxDescent,
  };
}"""


def _assert_glyphs_fit(field) -> None:
    extent = field.evaluate(GLYPH_EXTENT)
    assert extent["inkDescent"] <= extent["fontDescent"], f"glyphs reach below the clipped box: {extent}"
    assert extent["inkAscent"] <= extent["fontAscent"], f"glyphs reach above the clipped box: {extent}"


def test_new_token_shows_underscores(page, live_server, agent, tmp_path):
    _sign_in(page, live_server.url, agent.email)
    page.goto(live_server.url + "/account")
    page.get_by_label("Token name").fill("reporting")
    page.get_by_role("button", name="Create token").click()
    field = page.locator("#new-token")
    expect(field).to_have_value(re.compile("^sbt_"))

    field.screenshot(path=str(tmp_path / "new-token.png"))
    _assert_glyphs_fit(field)


def test_reset_link_shows_underscores(page, live_server, state, agent, tmp_path):
    admin = add_agent(state, "root@example.com", "Rita Root", Role.ADMIN.value)
    _sign_in(page, live_server.url, admin.email)
    page.goto(live_server.url + "/admin/agents")
    field = page.locator("#reset-link")
    page.locator("summary[aria-label='Reset the password of %s']" % agent.name).click()
    page.get_by_role("button", name=f"Create a one-time reset link for {agent.name}").click()
    expect(field).to_have_value(re.compile("^http"))

    field.screenshot(path=str(tmp_path / "reset-link.png"))
    _assert_glyphs_fit(field)
