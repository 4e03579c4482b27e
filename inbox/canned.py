"""Canned responses: saved reply texts with placeholders that agents insert into a reply.

Shared responses belong to the workspace, and only managers and admins change them. Every
agent may also keep personal responses, which only they see and change.

Placeholders use Jinja's expression syntax but are substituted by this module, not run as
templates: ``{{ customer.first_name }}``, optionally with a fallback for an empty value,
``{{ customer.first_name | default("there") }}``. Nothing else is evaluated, so a response
cannot loop, call functions or read attributes beyond the names in ``PLACEHOLDERS``, and
the values are inserted as plain text into the reply box.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from inbox.errors import Forbidden, InvalidInput, NotFound
from inbox.models import Agent, CannedResponse, Conversation, Role
from inbox.serialize import isoformat

MAX_TITLE_LENGTH = 80
MAX_BODY_LENGTH = 5_000
MAX_RESPONSES_PER_OWNER = 500

_PLACEHOLDER = re.compile(
    r"""\{\{\s*(?P<name>[A-Za-z_][\w.]*)\s*"""
    r"""(?:\|\s*default\(\s*(?:"(?P<double>[^"{}]*)"|'(?P<single>[^'{}]*)')\s*\)\s*)?\}\}"""
)
# Any "{{ ... }}", to report one that is not a valid placeholder instead of leaving it in.
_ANY_EXPRESSION = re.compile(r"\{\{.*?\}\}", re.DOTALL)


@dataclass(frozen=True)
class PlaceholderContext:
    """The values placeholders are filled from: one conversation and the agent replying."""

    conversation: Conversation
    agent: Agent


def _first_word(text: str | None) -> str:
    words = (text or "").split()
    return words[0] if words else ""


PLACEHOLDERS: dict[str, tuple[str, Callable[[PlaceholderContext], str]]] = {
    "customer.name": ("the customer's name", lambda c: c.conversation.contact.name or ""),
    "customer.first_name": ("the first word of the customer's name", lambda c: _first_word(c.conversation.contact.name)),
    "agent.name": ("your name", lambda c: c.agent.name or ""),
    "agent.first_name": ("the first word of your name", lambda c: _first_word(c.agent.name)),
    "agent.email": ("your email address", lambda c: c.agent.email),
    "conversation.reference": ("the conversation's reference, such as #42", lambda c: f"#{c.conversation.id}"),
    "conversation.subject": ("the email subject, or empty", lambda c: c.conversation.subject or ""),
    "channel.name": ("the channel's name", lambda c: c.conversation.channel.name),
}


def check_placeholders(body: str) -> None:
    """Raise ``InvalidInput`` naming the first ``{{ ... }}`` that is not a known placeholder."""
    for expression in _ANY_EXPRESSION.finditer(body):
        match = _PLACEHOLDER.fullmatch(expression.group(0))
        if match is None:
            raise InvalidInput(
                f"{expression.group(0)} is not a placeholder. Write {{{{ name }}}} or "
                f'{{{{ name | default("text") }}}} with one of: {", ".join(PLACEHOLDERS)}.',
                field="body",
            )
        if match.group("name") not in PLACEHOLDERS:
            raise InvalidInput(
                f"Unknown placeholder {match.group('name')!r}; use one of: {', '.join(PLACEHOLDERS)}.",
                field="body",
            )


def render_placeholders(body: str, context: PlaceholderContext) -> str:
    """Return ``body`` with each placeholder replaced by its value, or by its fallback when empty.

    An unknown placeholder (saved before it was removed from ``PLACEHOLDERS``) is left as written.
    """

    def substitute(match: re.Match[str]) -> str:
        entry = PLACEHOLDERS.get(match.group("name"))
        if entry is None:
            return match.group(0)
        value = entry[1](context).strip()
        if value:
            return value
        return match.group("double") or match.group("single") or ""

    return _PLACEHOLDER.sub(substitute, body)


def _may_change(agent: Agent, response: CannedResponse) -> bool:
    if response.owner_id is None:
        return agent.role in (Role.MANAGER.value, Role.ADMIN.value)
    return response.owner_id == agent.id


def _clean_fields(title: Any, body: Any) -> tuple[str, str]:
    if not isinstance(title, str) or not title.strip():
        raise InvalidInput("title is required and must be a non-empty string.", field="title")
    title = " ".join(title.split())
    if len(title) > MAX_TITLE_LENGTH:
        raise InvalidInput(f"The title has {len(title)} characters, but at most {MAX_TITLE_LENGTH} are allowed.", field="title")
    if not isinstance(body, str) or not body.strip():
        raise InvalidInput("body is required and must be a non-empty string.", field="body")
    body = body.strip()
    if len(body) > MAX_BODY_LENGTH:
        raise InvalidInput(f"The text has {len(body)} characters, but at most {MAX_BODY_LENGTH} are allowed.", field="body")
    check_placeholders(body)
    return title, body


def list_canned_responses(session: Session, agent: Agent) -> list[CannedResponse]:
    """Return the shared responses and the agent's personal ones, by title."""
    query = (
        select(CannedResponse)
        .where(or_(CannedResponse.owner_id.is_(None), CannedResponse.owner_id == agent.id))
        .order_by(CannedResponse.title, CannedResponse.id)
    )
    return list(session.scalars(query))


def create_canned_response(session: Session, agent: Agent, title: Any, body: Any, shared: Any) -> CannedResponse:
    """Add a canned response: shared (managers and admins only) or personal to ``agent``.

    Raises ``InvalidInput`` for a bad title, body or ``shared`` flag, or when the owner already
    has ``MAX_RESPONSES_PER_OWNER`` responses, and ``Forbidden`` for an agent creating a
    shared one.
    """
    if not isinstance(shared, bool):
        raise InvalidInput("shared must be true or false.", field="shared")
    title, body = _clean_fields(title, body)
    owner_id = None if shared else agent.id
    if shared and agent.role not in (Role.MANAGER.value, Role.ADMIN.value):
        raise Forbidden("Only managers and admins create shared canned responses; make it personal.", field="shared")
    owner_filter = CannedResponse.owner_id.is_(None) if owner_id is None else CannedResponse.owner_id == owner_id
    count = session.scalar(select(func.count()).select_from(CannedResponse).where(owner_filter)) or 0
    if count >= MAX_RESPONSES_PER_OWNER:
        raise InvalidInput(
            f"There are already {count} {'shared' if shared else 'personal'} canned responses, the maximum; "
            "delete one first.",
        )
    response = CannedResponse(owner_id=owner_id, title=title, body=body, updated_by_id=agent.id)
    session.add(response)
    session.flush()
    return response


def get_canned_response_or_404(session: Session, agent: Agent, response_id: int) -> CannedResponse:
    """Return a response the agent can see; another agent's personal one is not found."""
    response = session.get(CannedResponse, response_id)
    if response is None or (response.owner_id is not None and response.owner_id != agent.id):
        raise NotFound(f"Canned response {response_id} not found.")
    return response


def update_canned_response(session: Session, agent: Agent, response_id: int, changes: dict[str, Any]) -> CannedResponse:
    """Change the title or body of a response the agent may change.

    Raises ``NotFound``, ``Forbidden`` (an agent changing a shared response) or ``InvalidInput``.
    """
    response = get_canned_response_or_404(session, agent, response_id)
    if not _may_change(agent, response):
        raise Forbidden("Only managers and admins change shared canned responses.")
    unknown = set(changes) - {"title", "body"}
    if unknown:
        raise InvalidInput(f"Unknown field {sorted(unknown)[0]!r}: only title and body can change.", field=sorted(unknown)[0])
    title, body = _clean_fields(changes.get("title", response.title), changes.get("body", response.body))
    response.title = title
    response.body = body
    response.updated_by_id = agent.id
    session.flush()
    return response


def delete_canned_response(session: Session, agent: Agent, response_id: int) -> None:
    """Delete a response the agent may change. Raises ``NotFound`` or ``Forbidden``."""
    response = get_canned_response_or_404(session, agent, response_id)
    if not _may_change(agent, response):
        raise Forbidden("Only managers and admins delete shared canned responses.")
    session.delete(response)
    session.flush()


def canned_response_to_dict(
    response: CannedResponse, agent: Agent, context: PlaceholderContext | None = None
) -> dict[str, Any]:
    """Return the API form; with ``context`` it also carries ``rendered``, the text to insert."""
    data: dict[str, Any] = {
        "id": response.id,
        "title": response.title,
        "body": response.body,
        "shared": response.owner_id is None,
        "editable": _may_change(agent, response),
        "updated_at": isoformat(response.updated_at),
    }
    if context is not None:
        data["rendered"] = render_placeholders(response.body, context)
    return data


def placeholder_list() -> list[dict[str, str]]:
    return [{"name": name, "description": description} for name, (description, _) in PLACEHOLDERS.items()]
