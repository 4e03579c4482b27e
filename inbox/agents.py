"""Agents, their passwords and their API tokens."""

from __future__ import annotations

import hashlib
import re
import secrets

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from inbox.errors import Conflict, InvalidInput, NotFound
from inbox.models import Agent, AgentSession, ApiToken, Role, utcnow

MIN_PASSWORD_LENGTH = 10
TOKEN_PREFIX = "sbt_"
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

# Compared against when the email is unknown, so a failed login takes the same time.
_DUMMY_HASH = generate_password_hash("switchboard-timing-equaliser")


def normalize_email(email: str) -> str:
    return email.strip().lower()


def create_agent(
    session: Session, email: str, name: str, password: str, role: str = Role.AGENT.value
) -> Agent:
    """Add a new agent to the session. Raises ``InvalidInput`` or ``Conflict``."""
    email = normalize_email(email)
    if not _EMAIL.match(email):
        raise InvalidInput(f"{email!r} is not a valid email address.", field="email")
    if not name.strip():
        raise InvalidInput("The name is empty.", field="name")
    _check_password(password)
    if role not in {r.value for r in Role}:
        raise InvalidInput(f"Unknown role {role!r}; use agent, manager or admin.", field="role")
    if session.scalar(select(Agent.id).where(Agent.email == email)) is not None:
        raise Conflict(f"An agent with email {email} already exists.", field="email")

    agent = Agent(
        email=email, name=name.strip(), password_hash=generate_password_hash(password), role=role
    )
    session.add(agent)
    session.flush()
    return agent


def _check_password(password: str) -> None:
    if len(password.strip()) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(
            f"The password must have at least {MIN_PASSWORD_LENGTH} characters besides spaces.",
            field="password",
        )


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


def start_session(session: Session, agent: Agent) -> str:
    """Record a new browser sign-in for ``agent`` and return its token for the cookie."""
    token = secrets.token_urlsafe(32)
    session.add(AgentSession(agent_id=agent.id, token_hash=_token_hash(token)))
    session.flush()
    return token


def agent_for_session(session: Session, token: str) -> Agent | None:
    """Return the active agent of an unrevoked sign-in, or None."""
    row = session.scalar(select(AgentSession).where(AgentSession.token_hash == _token_hash(token)))
    if row is None or row.revoked_at is not None or not row.agent.is_active:
        return None
    return row.agent


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
    row.last_used_at = utcnow()
    return row.agent


def count_agents(session: Session) -> int:
    return session.scalar(select(func.count(Agent.id))) or 0
