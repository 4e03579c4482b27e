"""What every page shares: one error page for 403 and 404, the site header, and /admin."""

from __future__ import annotations

import re

import pytest

from tests.gateway.test_people_pages import _sign_in_as

BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}

# Each page with the site header and the least role it needs.
HEADER_PAGES = [
    ("/reports", "manager"),
    ("/updates", "manager"),
    ("/updates/log", "manager"),
    ("/admin/teams", "manager"),
    ("/admin/agents", "admin"),
    ("/admin/audit", "admin"),
    ("/channels", "admin"),
    ("/account", "agent"),
]
RANK = {"agent": 0, "manager": 1, "admin": 2}
# The header's links in order, each with the least role that sees it.
NAV_ORDER = [
    ("Inbox", "agent"), ("Reports", "manager"), ("Proactive updates", "manager"), ("Teams", "manager"), ("Agents", "admin"),
    ("Audit log", "admin"), ("Channels", "admin"), ("Account", "agent"),
]


def _nav_links(html: str) -> list[str]:
    nav = re.search(r'<nav class="admin-nav" aria-label="Site">(.*?)</nav>', html, re.S)
    assert nav is not None, "the page has no site header navigation"
    return re.findall(r">([^<>]+)</a>", nav.group(1))


@pytest.mark.parametrize("role", ["agent", "manager"])
def test_forbidden_pages_share_error_page(app, state, role):
    client, _, _ = _sign_in_as(app, state, role)
    for path, needed in HEADER_PAGES:
        if RANK[needed] <= RANK[role]:
            continue
        response = client.get(path, headers=BROWSER)
        assert response.status_code == 403, path
        assert response.mimetype == "text/html", path
        body = response.get_data(as_text=True)
        assert "<h1>Not allowed</h1>" in body, path
        assert f"This page needs the {needed} role." in body, path
        assert 'aria-label="Site"' in body, path


def test_unknown_page_gets_error_page(app, state):
    client, _, _ = _sign_in_as(app, state, "agent")
    response = client.get("/no-such-page", headers=BROWSER)
    assert response.status_code == 404
    assert response.mimetype == "text/html"
    assert "<h1>Page not found</h1>" in response.get_data(as_text=True)


def test_unknown_page_anonymous_gets_error_page(app):
    response = app.test_client().get("/admin/nothing-here", headers=BROWSER)
    assert response.status_code == 404
    body = response.get_data(as_text=True)
    assert "<h1>Page not found</h1>" in body
    assert 'aria-label="Site"' not in body


def test_api_errors_stay_json(app, state):
    client, _, _ = _sign_in_as(app, state, "agent")
    missing = client.get("/api/v1/no-such-route", headers=BROWSER)
    assert missing.status_code == 404
    assert missing.get_json()["error"]["code"] == "not_found"
    forbidden = client.get("/api/v1/proactive/sends", headers=BROWSER)
    assert forbidden.status_code == 403
    assert forbidden.get_json()["error"]["code"] == "forbidden"


def test_webhook_not_found_is_not_a_page(app):
    response = app.test_client().post("/webhooks/nothing")
    assert response.status_code == 404
    assert "Page not found" not in response.get_data(as_text=True)


@pytest.mark.parametrize("role", ["agent", "manager", "admin"])
def test_header_links_follow_role(app, state, role):
    client, _, _ = _sign_in_as(app, state, role)
    expected = [name for name, needed in NAV_ORDER if RANK[needed] <= RANK[role]]
    for path, needed in HEADER_PAGES:
        if RANK[needed] > RANK[role]:
            continue
        response = client.get(path)
        assert response.status_code == 200, path
        assert _nav_links(response.get_data(as_text=True)) == expected, path


@pytest.mark.parametrize(("role", "status", "location"), [
    ("agent", 403, None), ("manager", 302, "/admin/teams"), ("admin", 302, "/admin/teams"),
])
def test_admin_goes_to_first_allowed_page(app, state, role, status, location):
    client, _, _ = _sign_in_as(app, state, role)
    response = client.get("/admin", headers=BROWSER)
    assert response.status_code == status
    if location:
        assert response.headers["Location"] == location


def test_page_refusal_is_json_for_token(app, api_token):
    response = app.test_client().get("/channels", headers={"Authorization": f"Bearer {api_token}"})
    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "forbidden"
