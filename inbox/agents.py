"""Agents, their passwords, sign-ins and API tokens, and the admin actions on them.

A sign-in (``AgentSession``) ends when it is revoked, when it was idle longer than the idle
timeout, or when it is older than its absolute lifetime, whichever comes first. Disabling
an agent makes every sign-in and API token of theirs fail at the next request, because each
lookup checks ``Agent.is_active``. Admin actions write an audit row (``inbox.audit``) in the
same transaction.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from inbox.audit import Action, record_audit
from inbox.errors import Conflict, Forbidden, InvalidInput, NotFound
from inbox.models import Agent, AgentSession, ApiToken, PasswordReset, Role, utcnow

MIN_PASSWORD_LENGTH = 10
# Longer passwords only slow down hashing; no person types more.
MAX_PASSWORD_LENGTH = 200
MAX_TOKEN_NAME = 200
TOKEN_PREFIX = "sbt_"
# Last-seen times are written at most once per this many seconds per sign-in or token,
# so that reading the inbox does not turn every request into a write.
LAST_SEEN_RESOLUTION = timedelta(seconds=60)
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

# Compared against when the email is unknown, so a failed login takes the same time.
_DUMMY_HASH = generate_password_hash("switchboard-timing-equaliser")


def normalize_email(email: str) -> str:
    return email.strip().lower()


def create_agent(
    session: Session, email: str, name: str, password: str, role: str = Role.AGENT.value
) -> Agent:
    """Add a new agent to the session. Raises ``InvalidInput`` or ``Conflict``."""
    email = check_new_agent(session, email, name, role)
    _check_password(password)
    agent = Agent(
        email=email, name=name.strip(), password_hash=generate_password_hash(password), role=role
    )
    session.add(agent)
    session.flush()
    return agent


def check_new_agent(session: Session, email: str, name: str, role: str) -> str:
    """Check the email address, name and role of an agent to create, but not the password,
    and return the address as stored. Raises ``InvalidInput`` or ``Conflict``."""
    email = normalize_email(email)
    if not _EMAIL.match(email):
        raise InvalidInput(f"{email!r} is not a valid email address.", field="email")
    if not name.strip():
        raise InvalidInput("The name is empty.", field="name")
    if role not in {r.value for r in Role}:
        raise InvalidInput(f"Unknown role {role!r}; use agent, manager or admin.", field="role")
    if session.scalar(select(Agent.id).where(Agent.email == email)) is not None:
        raise Conflict(f"An agent with email {email} already exists.", field="email")
    return email


def _check_password(password: object, field: str = "password") -> None:
    if not isinstance(password, str):
        raise InvalidInput("The password must be a string.", field=field)
    if len(password.strip()) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(
            f"The password must have at least {MIN_PASSWORD_LENGTH} characters besides spaces.",
            field=field,
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise InvalidInput(f"The password must have at most {MAX_PASSWORD_LENGTH} characters.", field=field)


def set_password(session: Session, email: str, password: str) -> Agent:
    """Set an agent's password, which also ends their sessions. Raises ``NotFound``, ``InvalidInput``."""
    agent = session.scalar(select(Agent).where(Agent.email == normalize_email(email)))
    if agent is None:
        raise NotFound(f"No agent with email {normalize_email(email)}.", field="email")
    _check_password(password)
    agent.password_hash = generate_password_hash(password)
    end_all_sessions(session, agent)
    return agent


def authenticate(session: Session, email: str, password: str) -> Agent | None:
    """Return the active agent with this email and password, or None.

    Ends the session's transaction before the deliberately slow password check, so that the
    check holds no database lock (on SQLite every transaction holds the write lock).
    """
    agent = session.scalar(select(Agent).where(Agent.email == normalize_email(email)))
    session.commit()
    if agent is None:
        check_password_hash(_DUMMY_HASH, password)
        return None
    if not check_password_hash(agent.password_hash, password) or not agent.is_active:
        return None
    return agent


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class SessionLimits:
    """How long a sign-in lasts: seconds without a request, and seconds since it began."""

    idle_timeout: int
    absolute_lifetime: int

    def expired(self, row: AgentSession, now: datetime) -> bool:
        last_activity = row.last_seen_at or row.created_at
        return (
            now - last_activity > timedelta(seconds=self.idle_timeout)
            or now - row.created_at > timedelta(seconds=self.absolute_lifetime)
        )


def start_session(
    session: Session, agent: Agent, user_agent: str | None = None, ip_address: str | None = None
) -> str:
    """Record a new browser sign-in for ``agent`` and return its token for the cookie."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    session.add(AgentSession(
        agent_id=agent.id, token_hash=_token_hash(token), created_at=now, last_seen_at=now,
        user_agent=(user_agent or "")[:300] or None, ip_address=(ip_address or "")[:45] or None,
    ))
    agent.last_seen_at = now
    session.flush()
    return token


def session_for_token(session: Session, token: str) -> AgentSession | None:
    return session.scalar(select(AgentSession).where(AgentSession.token_hash == _token_hash(token)))


def agent_for_session(session: Session, token: str, limits: SessionLimits | None = None) -> Agent | None:
    """Return the active agent of an unrevoked, unexpired sign-in, or None.

    With ``limits``, an expired sign-in is revoked, and a valid one gets its last-seen time
    moved forward (at most once per ``LAST_SEEN_RESOLUTION``); the caller commits.
    """
    row = session_for_token(session, token)
    if row is None or row.revoked_at is not None or not row.agent.is_active:
        return None
    if limits is not None:
        now = utcnow()
        if limits.expired(row, now):
            row.revoked_at = now
            return None
        _touch(row, row.agent, now)
    return row.agent


def _touch(row: AgentSession | ApiToken, agent: Agent, now: datetime) -> None:
    seen = row.last_seen_at if isinstance(row, AgentSession) else row.last_used_at
    if seen is not None and now - seen < LAST_SEEN_RESOLUTION:
        return
    if isinstance(row, AgentSession):
        row.last_seen_at = now
    else:
        row.last_used_at = now
    if agent.last_seen_at is None or now - agent.last_seen_at >= LAST_SEEN_RESOLUTION:
        agent.last_seen_at = now


def end_session(session: Session, token: str) -> int | None:
    """Revoke one sign-in. Returns its agent's id, or None for an unknown token."""
    row = session.scalar(select(AgentSession).where(AgentSession.token_hash == _token_hash(token)))
    if row is None:
        return None
    row.revoked_at = row.revoked_at or utcnow()
    return row.agent_id


def end_all_sessions(session: Session, agent: Agent) -> None:
    """Revoke every sign-in of ``agent``, for example after a password change."""
    session.execute(
        update(AgentSession)
        .where(AgentSession.agent_id == agent.id, AgentSession.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )


def create_api_token(session: Session, agent: Agent, name: str) -> str:
    """Create an API token for ``agent`` and return it; only its hash is stored."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiToken(agent_id=agent.id, name=name or "api", token_hash=_token_hash(token)))
    session.flush()
    return token


def agent_for_token(session: Session, token: str) -> Agent | None:
    """Return the active agent owning ``token``, or None; records when it was last used."""
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == _token_hash(token)))
    if row is None or not row.agent.is_active:
        return None
    _touch(row, row.agent, utcnow())
    return row.agent


def count_agents(session: Session) -> int:
    return session.scalar(select(func.count(Agent.id))) or 0


# ---- Admin actions on agents --------------------------------------------------------------


def list_agents(session: Session) -> list[Agent]:
    """Return every agent, active or disabled, by name."""
    return list(session.scalars(select(Agent).order_by(Agent.name, Agent.id)))


def get_agent_or_404(session: Session, agent_id: int) -> Agent:
    agent = session.get(Agent, agent_id)
    if agent is None:
        raise NotFound(f"Agent {agent_id} not found.", field="agent_id")
    return agent


def find_agent_by_email(session: Session, email: str) -> Agent:
    """Return the agent with ``email``. Raises ``NotFound``."""
    agent = session.scalar(select(Agent).where(Agent.email == normalize_email(email)))
    if agent is None:
        raise NotFound(f"No agent with email {normalize_email(email)}.", field="email")
    return agent


def add_agent(
    session: Session, actor: Agent | None, email: object, name: object, password: object, role: object
) -> Agent:
    """Create an agent as ``actor`` (None for the command line) and log it.

    Raises ``InvalidInput`` or ``Conflict`` like ``create_agent``.
    """
    for field, value in (("email", email), ("name", name), ("role", role)):
        if not isinstance(value, str):
            raise InvalidInput(f"{field} must be a string.", field=field)
    _check_password(password)
    agent = create_agent(session, email, name, password, role)  # type: ignore[arg-type]
    record_audit(session, actor, Action.AGENT_CREATED, "agent", agent.id, agent.email,
                 {"name": agent.name, "role": agent.role})
    return agent


def _lock_active_admins(session: Session) -> list[int]:
    """Lock the rows of the active admins and return their ids.

    Two admins who demote or disable each other at the same moment would otherwise both
    count the other as the remaining admin under read committed, and both commit. With the
    rows locked (``FOR UPDATE``, in id order so that two callers cannot deadlock), the second
    caller waits for the first to commit and then counts the committed state. SQLite ignores
    ``FOR UPDATE`` and needs no lock there: every transaction begins with ``BEGIN IMMEDIATE``
    (``inbox.db``), so transactions run one at a time.
    """
    return list(session.scalars(
        select(Agent.id)
        .where(Agent.role == Role.ADMIN.value, Agent.is_active.is_(True))
        .order_by(Agent.id)
        .with_for_update()
    ))


def _keep_an_admin(session: Session, agent: Agent, change: str) -> None:
    if _lock_active_admins(session) == [agent.id]:
        raise Conflict(
            f"{agent.email} is the only active admin; make another agent admin before you {change}.",
            code="last_admin",
        )


def change_role(session: Session, actor: Agent | None, agent_id: int, role: object) -> Agent:
    """Give an agent another role and log it. Raises ``NotFound``, ``InvalidInput``, ``Conflict``.

    The last active admin keeps the admin role, so the workspace always has one.
    """
    agent = get_agent_or_404(session, agent_id)
    if role not in {r.value for r in Role}:
        raise InvalidInput(f"Unknown role {role!r}; use agent, manager or admin.", field="role")
    if role == agent.role:
        return agent
    if role != Role.ADMIN.value:
        _keep_an_admin(session, agent, f"make them {role}")
    record_audit(session, actor, Action.AGENT_ROLE_CHANGED, "agent", agent.id, agent.email,
                 {"from": agent.role, "to": role})
    agent.role = str(role)
    return agent


def set_agent_active(session: Session, actor: Agent | None, agent_id: int, active: bool) -> Agent:
    """Disable or enable an agent and log it; disabling also ends their sign-ins.

    A disabled agent's API tokens are refused while they are disabled and work again after
    enabling. An agent cannot disable their own account, and the last active admin stays enabled.
    Raises ``NotFound`` or ``Conflict``; doing what is already done changes nothing.
    """
    agent = get_agent_or_404(session, agent_id)
    if agent.is_active == active:
        return agent
    if not active:
        if actor is not None and actor.id == agent.id:
            raise Conflict("You cannot disable your own account; ask another admin.", code="own_account")
        _keep_an_admin(session, agent, "disable them")
        end_all_sessions(session, agent)
    agent.is_active = active
    record_audit(session, actor, Action.AGENT_ENABLED if active else Action.AGENT_DISABLED, "agent", agent.id, agent.email)
    return agent


def set_temporary_password(session: Session, actor: Agent | None, agent_id: int, password: object) -> Agent:
    """Set a password the agent must replace at their next sign-in, end their sign-ins, log it.

    Raises ``NotFound`` or ``InvalidInput``.
    """
    agent = get_agent_or_404(session, agent_id)
    _check_password(password, "temporary_password")
    _replace_password(session, agent, str(password), temporary=True)
    record_audit(session, actor, Action.PASSWORD_RESET, "agent", agent.id, agent.email, {"method": "temporary_password"})
    return agent


def _replace_password(session: Session, agent: Agent, password: str, *, temporary: bool) -> None:
    """Store a checked password and end every sign-in of ``agent``."""
    agent.password_hash = generate_password_hash(password)
    agent.must_change_password = temporary
    end_all_sessions(session, agent)


def create_reset_link(
    session: Session, actor: Agent | None, agent_id: int, lifetime_seconds: int
) -> tuple[str, PasswordReset]:
    """Create a one-time password reset token for an agent, log it and return the token.

    Earlier unused links of the agent stop working. The current password keeps working
    until the link is used. Raises ``NotFound``, or ``Conflict`` for a disabled agent.
    """
    agent = get_agent_or_404(session, agent_id)
    if not agent.is_active:
        raise Conflict(f"{agent.email} is disabled; enable the account first.", code="agent_disabled")
    now = utcnow()
    session.execute(
        update(PasswordReset)
        .where(PasswordReset.agent_id == agent.id, PasswordReset.used_at.is_(None))
        .values(used_at=now)
    )
    token = secrets.token_urlsafe(32)
    reset = PasswordReset(
        agent_id=agent.id, token_hash=_token_hash(token), created_by_id=actor.id if actor else None,
        created_at=now, expires_at=now + timedelta(seconds=lifetime_seconds),
    )
    session.add(reset)
    record_audit(session, actor, Action.PASSWORD_RESET, "agent", agent.id, agent.email,
                 {"method": "link", "expires_at": reset.expires_at.isoformat()})
    session.flush()
    return token, reset


def valid_reset(session: Session, token: str) -> PasswordReset | None:
    """Return the unused, unexpired reset of an active agent for ``token``, or None."""
    reset = session.scalar(select(PasswordReset).where(PasswordReset.token_hash == _token_hash(token)))
    if reset is None or reset.used_at is not None or reset.expires_at <= utcnow() or not reset.agent.is_active:
        return None
    return reset


def use_reset_link(session: Session, token: str, new_password: object) -> Agent:
    """Set the password through a reset link, which then stops working; ends every sign-in.

    Raises ``NotFound`` for an unknown, used or expired link and ``InvalidInput`` for a
    password that is too short.
    """
    reset = valid_reset(session, token)
    if reset is None:
        raise NotFound("This reset link is invalid, used or expired; ask an admin for a new one.", code="invalid_link")
    _check_password(new_password, "new_password")
    agent = reset.agent
    reset.used_at = utcnow()
    _replace_password(session, agent, str(new_password), temporary=False)
    record_audit(session, agent, Action.PASSWORD_CHANGED, "agent", agent.id, agent.email, {"method": "link"})
    return agent


# ---- An agent's own account ---------------------------------------------------------------


def change_own_password(
    session: Session, agent: Agent, current_password: object, new_password: object, keep_session: str | None
) -> None:
    """Change ``agent``'s password after checking the current one, and end their other sign-ins.

    ``keep_session`` is the cookie token of the sign-in that made the change, which stays
    valid; None ends every sign-in. Raises ``Forbidden`` for a wrong current password and
    ``InvalidInput`` for a new one that is too short or the same as the current one.
    """
    if not isinstance(current_password, str) or not check_password_hash(agent.password_hash, current_password):
        raise Forbidden("The current password is wrong.", field="current_password", code="wrong_password")
    _check_password(new_password, "new_password")
    if new_password == current_password:
        raise InvalidInput("The new password must differ from the current one.", field="new_password")
    agent.password_hash = generate_password_hash(str(new_password))
    agent.must_change_password = False
    kept_hash = _token_hash(keep_session) if keep_session else None
    session.execute(
        update(AgentSession)
        .where(AgentSession.agent_id == agent.id, AgentSession.revoked_at.is_(None),
               AgentSession.token_hash != (kept_hash or ""))
        .values(revoked_at=utcnow())
    )
    record_audit(session, agent, Action.PASSWORD_CHANGED, "agent", agent.id, agent.email, {"method": "own"})


def list_sign_ins(session: Session, agent: Agent, limits: SessionLimits) -> list[AgentSession]:
    """Return the agent's sign-ins that are neither revoked nor expired, newest first."""
    rows = session.scalars(
        select(AgentSession)
        .where(AgentSession.agent_id == agent.id, AgentSession.revoked_at.is_(None))
        .order_by(AgentSession.id.desc())
    )
    now = utcnow()
    return [row for row in rows if not limits.expired(row, now)]


def end_own_sign_in(session: Session, agent: Agent, sign_in_id: int) -> AgentSession:
    """Revoke one of ``agent``'s own sign-ins. Raises ``NotFound`` for anyone else's."""
    row = session.get(AgentSession, sign_in_id)
    if row is None or row.agent_id != agent.id:
        raise NotFound(f"Sign-in {sign_in_id} not found.", field="session_id")
    row.revoked_at = row.revoked_at or utcnow()
    return row


def list_api_tokens(session: Session, agent: Agent) -> list[ApiToken]:
    return list(session.scalars(select(ApiToken).where(ApiToken.agent_id == agent.id).order_by(ApiToken.id)))


def issue_api_token(session: Session, actor: Agent | None, owner: Agent, name: object) -> tuple[str, ApiToken]:
    """Create an API token for ``owner``, log it, and return the token (shown once) and its row.

    Raises ``InvalidInput`` for a name that is not a string or too long.
    """
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput("Give the token a name, such as the script that uses it.", field="name")
    if len(name.strip()) > MAX_TOKEN_NAME:
        raise InvalidInput(f"The name must have at most {MAX_TOKEN_NAME} characters.", field="name")
    token = create_api_token(session, owner, name.strip())
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == _token_hash(token)))
    assert row is not None
    record_audit(session, actor, Action.TOKEN_CREATED, "token", row.id, row.name, {"owner": owner.email})
    return token, row


def revoke_api_token(session: Session, actor: Agent, token_id: int) -> ApiToken:
    """Delete one of ``actor``'s own API tokens and log it. Raises ``NotFound`` for others'."""
    row = session.get(ApiToken, token_id)
    if row is None or row.agent_id != actor.id:
        raise NotFound(f"API token {token_id} not found.", field="token_id")
    record_audit(session, actor, Action.TOKEN_REVOKED, "token", row.id, row.name, {"owner": actor.email})
    session.delete(row)
    session.flush()
    return row
