"""Sign-in limits: per address across emails, password checks at once, and throttle memory."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest

import gateway.auth
from gateway.auth import LoginThrottle, PasswordChecks
from gateway.config import Config, ConfigError
from tests.conftest import AGENT_PASSWORD, login


@pytest.fixture
def config(config):
    return replace(config, login_address_attempts=12, password_check_concurrency=2)


def _login_form(app) -> tuple[object, str]:
    client = app.test_client()
    client.get("/login")
    with client.session_transaction() as flask_session:
        return client, flask_session["csrf_token"]


def _attempt(app, email: str, password: str = "wrong password 1"):
    client, csrf = _login_form(app)
    return client.post("/login", data={"email": email, "password": password, "csrf_token": csrf})


def test_rotating_emails_hit_address_limit(app, agent):
    responses = [_attempt(app, f"nobody{index}@example.com") for index in range(15)]
    statuses = [response.status_code for response in responses]

    assert statuses == [200] * 12 + [429] * 3
    assert 1 <= int(responses[-1].headers["Retry-After"]) <= 300
    assert b"Too many failed attempts" in responses[-1].data
    # The address is blocked for a correct password too until the window has passed.
    assert _attempt(app, agent.email, AGENT_PASSWORD).status_code == 429


def test_successful_sign_ins_leave_address_limit(app, agent):
    for _ in range(15):
        login(app.test_client())

    assert _attempt(app, "nobody@example.com").status_code == 200


def test_email_limit_still_applies_per_email(app, agent):
    statuses = [_attempt(app, agent.email).status_code for _ in range(11)]
    other = _attempt(app, "other@example.com")

    assert statuses == [200] * 10 + [429]
    assert other.status_code == 200


def test_password_checks_run_at_most_concurrency(app, agent, monkeypatch):
    running = 0
    peak = 0
    lock = threading.Lock()
    authenticate = gateway.auth.authenticate

    def counting_authenticate(*args, **kwargs):
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        try:
            return authenticate(*args, **kwargs)
        finally:
            with lock:
                running -= 1

    monkeypatch.setattr(gateway.auth, "authenticate", counting_authenticate)
    # Generous wait, so that every attempt gets its turn even on a slow machine.
    app.extensions["switchboard.password_checks"] = PasswordChecks(2, wait_seconds=120)

    with ThreadPoolExecutor(10) as pool:
        statuses = list(pool.map(lambda index: _attempt(app, f"flood{index}@example.com").status_code, range(10)))

    assert statuses == [200] * 10
    assert peak >= 1
    assert peak <= 2


def test_busy_password_checks_answer_429(app, agent):
    checks = PasswordChecks(1, wait_seconds=0.2)
    app.extensions["switchboard.password_checks"] = checks

    with checks.slot() as held:
        assert held
        busy = _attempt(app, agent.email, AGENT_PASSWORD)
    after = _attempt(app, agent.email, AGENT_PASSWORD)

    assert busy.status_code == 429
    assert busy.headers["Retry-After"] == "1"
    assert b"Too many sign-ins at once" in busy.data
    assert after.status_code == 302


# The request headers of a form that Chromium sends: to an HTTPS or loopback address, and to
# any other address, where it sends no Sec-Fetch-* headers.
BROWSER_FORM = {"Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}
PLAIN_HTTP_BROWSER_FORM = {
    "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8",
}


@pytest.mark.parametrize("headers", [BROWSER_FORM, PLAIN_HTTP_BROWSER_FORM], ids=["fetch-metadata", "accept"])
def test_throttled_browser_form_redirects(app, agent, headers):
    for _ in range(10):
        _attempt(app, agent.email)
    client, csrf = _login_form(app)
    form = {"email": "Ada@Example.com", "password": AGENT_PASSWORD, "csrf_token": csrf, "next": "/reports"}

    response = client.post("/login", data=form, headers=headers)
    page = client.get(response.headers["Location"])
    again = client.get("/login")

    assert response.status_code == 303
    assert response.headers["Location"] == "/login?next=/reports"
    assert page.status_code == 200
    assert b"Too many failed attempts. Wait a few minutes and try again." in page.data
    assert b'value="Ada@Example.com"' in page.data
    assert b'name="next" value="/reports"' in page.data
    # The message belongs to that one attempt; loading the page again shows none.
    assert b"Too many failed attempts" not in again.data


def test_busy_password_checks_redirect_browser_form(app, agent):
    checks = PasswordChecks(1, wait_seconds=0.2)
    app.extensions["switchboard.password_checks"] = checks
    client, csrf = _login_form(app)

    with checks.slot() as held:
        assert held
        response = client.post(
            "/login", data={"email": agent.email, "password": AGENT_PASSWORD, "csrf_token": csrf}, headers=BROWSER_FORM
        )
    page = client.get(response.headers["Location"])

    assert response.status_code == 303
    assert b"Too many sign-ins at once. Wait a few seconds and try again." in page.data


def test_expired_browser_form_redirects(app, agent):
    client = app.test_client()
    response = client.post(
        "/login", data={"email": agent.email, "password": AGENT_PASSWORD, "csrf_token": "old"}, headers=BROWSER_FORM
    )
    page = client.get(response.headers["Location"])

    assert response.status_code == 303
    assert response.headers["Location"] == "/login"
    assert page.status_code == 200
    assert b"Your session expired. Please sign in again." in page.data
    assert f'value="{agent.email}"'.encode() in page.data


@pytest.mark.parametrize("headers", [{}, {"Accept": "*/*"}, {"Sec-Fetch-Mode": "cors", "Accept": "text/html"}])
def test_scripts_keep_rejection_statuses(app, agent, headers):
    for _ in range(10):
        _attempt(app, agent.email)
    client, csrf = _login_form(app)

    throttled = client.post(
        "/login", data={"email": agent.email, "password": AGENT_PASSWORD, "csrf_token": csrf}, headers=headers
    )
    expired = app.test_client().post(
        "/login", data={"email": agent.email, "password": AGENT_PASSWORD, "csrf_token": "old"}, headers=headers
    )

    assert throttled.status_code == 429
    assert 1 <= int(throttled.headers["Retry-After"]) <= 300
    assert b"Too many failed attempts" in throttled.data
    assert expired.status_code == 400
    assert b"Your session expired" in expired.data


def test_long_email_is_clipped_in_session(app, agent):
    client = app.test_client()
    response = client.post(
        "/login", data={"email": "a" * 5000, "password": "x", "csrf_token": "old"}, headers=BROWSER_FORM
    )

    with client.session_transaction() as flask_session:
        assert len(flask_session["login_notice"]["email"]) == 320
    assert response.status_code == 303


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_throttle_drops_expired_keys():
    clock = FakeClock()
    throttle = LoginThrottle(limit=2, window_seconds=300, clock=clock)
    for index in range(100):
        assert throttle.try_attempt(f"10.0.0.1|user{index}@example.com")
    assert throttle.key_count() == 100

    clock.now += 301
    assert throttle.try_attempt("10.0.0.2|late@example.com")

    assert throttle.key_count() == 1


def test_throttle_retry_after_counts_down():
    clock = FakeClock()
    throttle = LoginThrottle(limit=2, window_seconds=300, clock=clock)
    assert throttle.try_attempt("key")
    clock.now += 100
    assert throttle.try_attempt("key")
    assert not throttle.try_attempt("key")

    assert throttle.retry_after("key") == 200
    clock.now += 200
    assert throttle.try_attempt("key")


def test_throttle_release_forgets_empty_key():
    throttle = LoginThrottle(limit=2)
    assert throttle.try_attempt("key")

    throttle.release("key")

    assert throttle.key_count() == 0
    assert throttle.try_attempt("key")
    assert throttle.try_attempt("key")
    assert not throttle.try_attempt("key")


@pytest.mark.parametrize("name, value", [
    ("LOGIN_ADDRESS_ATTEMPTS", "5"),
    ("PASSWORD_CHECK_CONCURRENCY", "0"),
    ("SOCKET_CHECK_INTERVAL", "0.5"),
])
def test_config_rejects_too_low_limits(tmp_path, name, value):
    environ = {"SWITCHBOARD_INSTANCE_DIR": str(tmp_path), f"SWITCHBOARD_{name}": value}
    with pytest.raises(ConfigError, match=f"SWITCHBOARD_{name}={value}"):
        Config.from_env(environ)
