"""Agent authentication: login sessions, API tokens, CSRF and the default-deny guard.

Every endpoint needs a signed-in agent unless it is listed in ``PUBLIC_ENDPOINTS``. The guard
runs before each request, so a new route is protected without remembering a decorator.
Cookie-authenticated writes must carry the session's CSRF token (``X-CSRF-Token`` header or
a ``csrf_token`` form field); requests with ``Authorization: Bearer`` need none. The endpoints
in ``SIGN_IN_ONLY_ENDPOINTS`` (creating API tokens) need a cookie sign-in and reject API tokens.

A sign-in ends after ``session_lifetime`` seconds without a request or ``session_absolute_lifetime``
seconds after it began (``inbox.agents.SessionLimits``). While an agent's password is a
temporary one that an admin set, their browser reaches only the password change.
"""

from __future__ import annotations

import hmac
import logging
import math
import secrets
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from functools import wraps
from typing import Any, Callable
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    current_app,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.sessions import SecureCookieSessionInterface
from itsdangerous import URLSafeTimedSerializer
from sqlalchemy.orm import Session

from inbox.agents import (
    SessionLimits,
    agent_for_session,
    agent_for_token,
    authenticate,
    end_session,
    session_for_token,
    start_session,
)
from inbox.models import Agent, Role

log = logging.getLogger(__name__)

blueprint = Blueprint("auth", __name__)

PUBLIC_ENDPOINTS = frozenset(
    {
        "auth.login",
        "static",
        "health.healthz",
        "health.metrics",
        "webhooks.twilio_message",
        "webhooks.twilio_status",
        "webhooks.meta_verification",
        "webhooks.meta_events",
        "webhooks.twilio_media",
        "admin_pages.reset_password",
    }
)
# Endpoints that a browser signed in with a temporary password may still reach.
PASSWORD_CHANGE_ENDPOINTS = frozenset(
    {"admin_pages.change_password_page", "admin_api.change_password", "auth.logout", "api.me", "static"}
)
# Endpoints that reject API tokens: a leaked token must not create new tokens, which would
# keep working after the leaked one is revoked.
SIGN_IN_ONLY_ENDPOINTS = frozenset({"admin_api.create_token", "admin_pages.create_token_page"})
SIGN_IN_REQUIRED_MESSAGE = (
    "An API token cannot create another API token; sign in with your password and create it "
    "on the Account page."
)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
ROLE_RANK = {Role.AGENT.value: 0, Role.MANAGER.value: 1, Role.ADMIN.value: 2}

LOGIN_ATTEMPTS = 10
LOGIN_WINDOW_SECONDS = 300
# Messages for a sign-in rejected before its password check, by code. A browser's redirect back
# to the sign-in page carries the code in the session, under ``LOGIN_NOTICE``.
LOGIN_ERRORS = {
    "expired": "Your session expired. Please sign in again.",
    "throttled": "Too many failed attempts. Wait a few minutes and try again.",
    "busy": "Too many sign-ins at once. Wait a few seconds and try again.",
}
LOGIN_NOTICE = "login_notice"
DISABLED_NOTICE = (
    "This account has been disabled, so you were signed out. Ask an admin if you need access again."
)
MAX_EMAIL_LENGTH = 320
# Seconds a sign-in attempt waits for a free password check before it gets 429.
PASSWORD_CHECK_WAIT_SECONDS = 5.0


class LoginThrottle:
    """Attempts per key (such as a client address and email): at most ``limit`` per window.

    Keys whose attempts have all left the window are dropped, so keys that an attacker
    invents do not pile up in memory.
    """

    def __init__(
        self, limit: int = LOGIN_ATTEMPTS, window_seconds: float = LOGIN_WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window_seconds = window_seconds
        self._clock = clock
        self._attempts: dict[str, deque[float]] = {}
        self._last_sweep = clock()
        self._lock = threading.Lock()

    def key_count(self) -> int:
        """Return how many keys have attempts stored."""
        with self._lock:
            return len(self._attempts)

    def _recent(self, key: str, now: float) -> deque[float]:
        attempts = self._attempts.get(key) or deque()
        while attempts and attempts[0] <= now - self.window_seconds:
            attempts.popleft()
        return attempts

    def _sweep(self, now: float) -> None:
        """Drop every key without attempts in the window; runs at most once per window."""
        if now - self._last_sweep < self.window_seconds:
            return
        self._last_sweep = now
        for key in list(self._attempts):
            if not self._recent(key, now):
                del self._attempts[key]

    def try_attempt(self, key: str) -> bool:
        """Count one attempt for ``key`` and return False when the limit is already reached.

        Counting before the password check, in one step under the lock, keeps parallel
        guesses from all passing the check before any of them is recorded.
        """
        with self._lock:
            now = self._clock()
            self._sweep(now)
            attempts = self._recent(key, now)
            if len(attempts) >= self.limit:
                return False
            attempts.append(now)
            self._attempts[key] = attempts
            return True

    def retry_after(self, key: str) -> int:
        """Return the whole seconds until ``key`` may try again (at least 1)."""
        with self._lock:
            now = self._clock()
            attempts = self._recent(key, now)
            if len(attempts) < self.limit:
                return 1
            return max(1, math.ceil(attempts[0] + self.window_seconds - now))

    def release(self, key: str) -> None:
        """Remove the newest attempt of ``key``, for example one that succeeded."""
        with self._lock:
            attempts = self._attempts.get(key)
            if attempts:
                attempts.pop()
            if not attempts:
                self._attempts.pop(key, None)

    def reset(self, key: str) -> None:
        with self._lock:
            self._attempts.pop(key, None)


class PasswordChecks:
    """A limit on the password checks that run at once in this process.

    Each check hashes with scrypt, which takes about 32 MiB with Werkzeug's parameters
    (n=2**15, r=8 in Werkzeug 3.1), so unlimited parallel sign-in attempts would grow memory
    without bound. An attempt waits up to ``wait_seconds`` for a free slot.
    """

    def __init__(self, concurrency: int, wait_seconds: float = PASSWORD_CHECK_WAIT_SECONDS) -> None:
        self.concurrency = concurrency
        self.wait_seconds = wait_seconds
        self._slots = threading.BoundedSemaphore(concurrency)

    @contextmanager
    def slot(self) -> Iterator[bool]:
        """Hold a slot while the block runs; yield False when none was free in time."""
        acquired = self._slots.acquire(timeout=self.wait_seconds)
        try:
            yield acquired
        finally:
            if acquired:
                self._slots.release()


def db() -> Session:
    """Return the request's database session, opened on first use and closed at teardown."""
    if "db" not in g:
        g.db = current_app.extensions["switchboard"].session_factory()
    return g.db


def csrf_token() -> str:
    token = session.get("csrf_token")
    if not token:
        token = session["csrf_token"] = secrets.token_urlsafe(32)
    return token


def csrf_token_matches(sent: str) -> bool:
    """Tell whether ``sent`` is this session's CSRF token, in constant time.

    Compared as bytes: ``hmac.compare_digest`` refuses strings with non-ASCII characters,
    which anyone can send.
    """
    expected = session.get("csrf_token", "")
    return bool(sent) and hmac.compare_digest(sent.encode(), expected.encode())


def current_agent() -> Agent | None:
    """Return the agent of this request (session cookie or bearer token), or None."""
    if "agent" in g:
        return g.agent
    agent = None
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        agent = agent_for_token(db(), credentials.strip())
        if agent is not None:
            db().commit()  # keeps last_used_at
            g.token_auth = True
    elif session.get("sign_in"):
        agent = agent_for_session(db(), session["sign_in"], session_limits())
        if db().dirty:
            db().commit()  # keeps the last-seen time, or the revocation of an expired sign-in
    g.agent = agent
    return agent


def session_limits() -> SessionLimits:
    config = current_app.extensions["switchboard"].config
    return SessionLimits(config.session_lifetime, config.session_absolute_lifetime)


def _wants_json() -> bool:
    return request.path.startswith("/api/") or request.accept_mimetypes.best == "application/json"


def error_response(status: int, code: str, message: str, field: str | None = None) -> Any:
    body: dict[str, Any] = {"code": code, "message": message}
    if field:
        body["field"] = field
    return jsonify({"error": body}), status


def _guard() -> Any:
    if request.endpoint in PUBLIC_ENDPOINTS or request.endpoint is None:
        return None
    agent = current_agent()
    if agent is None:
        if _wants_json():
            return error_response(401, "unauthorized", "Sign in or send an API token.")
        return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
    if agent.must_change_password and not g.get("token_auth") and request.endpoint not in PASSWORD_CHANGE_ENDPOINTS:
        if _wants_json():
            return error_response(
                403, "password_change_required", "Choose a new password first: the current one is temporary."
            )
        return redirect(url_for("admin_pages.change_password_page"))
    if g.get("token_auth") and request.endpoint in SIGN_IN_ONLY_ENDPOINTS:
        log.warning("rejected an API token of agent %s on %s, which needs a sign-in", agent.id, request.endpoint)
        if _wants_json():
            return error_response(403, "sign_in_required", SIGN_IN_REQUIRED_MESSAGE)
        abort(403, description=SIGN_IN_REQUIRED_MESSAGE)
    if request.method not in SAFE_METHODS and not g.get("token_auth"):
        sent = request.headers.get("X-CSRF-Token") or request.form.get("csrf_token", "")
        if not csrf_token_matches(sent):
            log.warning("CSRF check failed for agent %s on %s", agent.id, request.path)
            if _wants_json():
                return error_response(403, "csrf_failed", "The CSRF token is missing or wrong; reload the page.")
            abort(403)
    return None


def require_role(role: Role) -> Callable:
    """Decorate a view so that only agents of ``role`` or a higher one may call it."""

    def decorator(view: Callable) -> Callable:
        @wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            agent = current_agent()
            if agent is None or ROLE_RANK.get(agent.role, -1) < ROLE_RANK[role.value]:
                return error_response(403, "forbidden", f"This needs the {role.value} role.")
            return view(*args, **kwargs)

        return wrapped

    return decorator


def _close_db(exception: BaseException | None) -> None:
    session_ = g.pop("db", None)
    if session_ is not None:
        session_.close()


# Scripts only from our origin; styles inline too, because email HTML carries its own.
# Remote images are allowed for email HTML, which the inbox shows only on request.
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: https:; connect-src 'self'; frame-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


def _security_headers(response: Response) -> Response:
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if response.mimetype == "text/html":
        response.headers.setdefault("Content-Security-Policy", PAGE_CSP)
    return response


class SessionCookies(SecureCookieSessionInterface):
    """Flask's signed session cookie, with its signing serializer built once, and no session for
    webhooks and static files.

    Flask builds the serializer for every request, and building one serializes an empty
    dict to find out whether the serializer returns text. Webhooks are signed by their
    provider and never sign anyone in, so they skip reading the cookie. Static files need no
    session either. A permanent session's cookie is sent again with every response, so the
    response to a stylesheet or icon that arrived after a form's redirect set the cookie as
    it was before the form, and the form's notice was lost.
    """

    def __init__(self) -> None:
        self._serializers: dict[tuple[Any, ...], URLSafeTimedSerializer | None] = {}

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        keys = (app.secret_key, *(app.config["SECRET_KEY_FALLBACKS"] or ()))
        serializer = self._serializers.get(keys)
        if serializer is None:
            serializer = self._serializers[keys] = super().get_signing_serializer(app)
        return serializer

    def open_session(self, app: Flask, request_: Any) -> Any:
        if request_.path.startswith(("/webhooks/", f"{app.static_url_path}/")):
            return self.make_null_session(app)
        return super().open_session(app, request_)


def init_app(app: Flask) -> None:
    config = app.extensions["switchboard"].config
    app.session_interface = SessionCookies()
    # Per client address and email, and per address whatever the email, so that trying
    # many emails from one address is limited too. NOTE: the counts are per process, so
    # several web processes each allow the full limits.
    app.extensions["switchboard.login_throttle"] = LoginThrottle()
    app.extensions["switchboard.login_address_throttle"] = LoginThrottle(config.login_address_attempts)
    app.extensions["switchboard.password_checks"] = PasswordChecks(config.password_check_concurrency)
    # Wrong current passwords on the password change, per agent, with the sign-in's limits.
    app.extensions["switchboard.password_throttle"] = LoginThrottle()
    app.before_request(_guard)
    app.after_request(_security_headers)
    app.teardown_appcontext(_close_db)
    app.jinja_env.globals["csrf_token"] = csrf_token


def _safe_next(target: str | None) -> str:
    # Only same-site paths, so the login form cannot bounce an agent to another site.
    if not target:
        return url_for("pages.inbox")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return url_for("pages.inbox")
    return target


def _from_browser_page() -> bool:
    """Tell whether the request is a browser loading a page or sending a form, not a script.

    Browsers send ``Sec-Fetch-Mode: navigate`` for both, but only to HTTPS and loopback
    addresses; elsewhere their page requests list text/html first in ``Accept``.
    """
    mode = request.headers.get("Sec-Fetch-Mode")
    if mode:
        return mode == "navigate"
    return request.accept_mimetypes.best == "text/html"


@blueprint.route("/login", methods=["GET", "POST"])
def login() -> Any:
    if request.method == "GET":
        notice = session.pop(LOGIN_NOTICE, None) or {}
        error = LOGIN_ERRORS.get(notice.get("error"))
        return render_template(
            "login.html", error=error, email=notice.get("email", ""), next_url=request.args.get("next"),
            notice=DISABLED_NOTICE if error is None and _signed_in_agent_disabled() else None,
            csrf_token=csrf_token(),
        )

    next_url = request.form.get("next")
    email = request.form.get("email", "").strip().lower()
    sent = request.form.get("csrf_token", "")
    if not csrf_token_matches(sent):
        return _login_rejected("expired", next_url, 400)

    throttle: LoginThrottle = current_app.extensions["switchboard.login_throttle"]
    address_throttle: LoginThrottle = current_app.extensions["switchboard.login_address_throttle"]
    address = request.remote_addr or ""
    key = f"{address}|{email}"
    for limiter, limited_key in ((throttle, key), (address_throttle, address)):
        if not limiter.try_attempt(limited_key):
            log.warning("login throttled for %s", address)
            return _login_rejected("throttled", next_url, 429, limiter.retry_after(limited_key))

    checks: PasswordChecks = current_app.extensions["switchboard.password_checks"]
    with checks.slot() as free:
        if not free:
            log.warning("login from %s rejected: all %d password checks busy", address, checks.concurrency)
            return _login_rejected("busy", next_url, 429, math.ceil(checks.wait_seconds))
        agent = authenticate(db(), email, request.form.get("password", ""))
    if agent is None:
        # 200 rather than 401: browsers log a 401 page as a console error although the form shows
        # the error, and RFC 9110 requires a 401 to carry a WWW-Authenticate challenge.
        return render_template(
            "login.html", error="The email or password is wrong.", email=request.form.get("email", ""),
            next_url=next_url, csrf_token=csrf_token(),
        )

    address_throttle.release(address)  # a colleague's success does not use up the address's limit
    throttle.reset(key)
    session.clear()  # nothing from before the sign-in carries over
    session.permanent = True
    session["sign_in"] = start_session(db(), agent, request.user_agent.string, request.remote_addr)
    db().commit()
    csrf_token()
    log.info("agent %s signed in", agent.id)
    if agent.must_change_password:
        return redirect(url_for("admin_pages.change_password_page"))
    return redirect(_safe_next(next_url))


def _signed_in_agent_disabled() -> bool:
    """Tell whether this browser's sign-in ended because an admin disabled its agent.

    Only a browser that signed in as that agent holds the sign-in's token in its session
    cookie, so nobody else learns which accounts are disabled. A sign-in that ended otherwise
    (signed out, expired, password changed) gets no message, and neither does one whose agent
    was enabled again.
    """
    token = session.get("sign_in")
    if not token:
        return False
    row = session_for_token(db(), token)
    return row is not None and not row.agent.is_active


def _login_rejected(error: str, next_url: str | None, status: int, retry_after: int | None = None) -> Any:
    """Return the response to a sign-in rejected before its password check, with the reason ``LOGIN_ERRORS[error]``.

    Scripts get the sign-in page with ``status`` (400 or 429) and ``Retry-After``. A browser's
    form gets a redirect to the sign-in page, which shows the message with 200, because
    browsers log every page that comes with a 4xx status as an error in the console.
    """
    # Clipped to the longest email address (64 characters, @, 255), so that the session cookie stays small.
    email = request.form.get("email", "")[:MAX_EMAIL_LENGTH]
    if _from_browser_page():
        session[LOGIN_NOTICE] = {"error": error, "email": email}
        return redirect(url_for("auth.login", next=next_url), 303)
    page = render_template(
        "login.html", error=LOGIN_ERRORS[error], email=email, next_url=next_url, csrf_token=csrf_token()
    )
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
    return page, status, headers


@blueprint.route("/logout", methods=["POST"])
def logout() -> Any:
    token = session.get("sign_in")
    if token:
        agent_id = end_session(db(), token)
        db().commit()
        current_app.extensions["switchboard.disconnect_session"](token, agent_id)
        log.info("agent %s signed out", agent_id)
    session.clear()
    return redirect(url_for("auth.login"))
