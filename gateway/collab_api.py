"""API routes for working together: internal notes, @mention notifications, canned responses.

The routes are under /api/v1 as a blueprint nested in ``gateway.api``'s, so they share its
JSON errors. ``gateway.auth``'s guard checks the sign-in and CSRF as for every route.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response, jsonify, request

from gateway.auth import current_agent, db
from inbox.canned import (
    PlaceholderContext,
    canned_response_to_dict,
    create_canned_response,
    delete_canned_response,
    list_canned_responses,
    placeholder_list,
    update_canned_response,
)
from inbox.errors import InvalidInput, NotFound
from inbox.mentions import count_unread_mentions, list_mentions, mark_mentions_read, mention_to_dict
from inbox.models import Agent, Conversation
from inbox.notes import create_note, list_notes, note_to_dict

log = logging.getLogger(__name__)

blueprint = Blueprint("collab", __name__)

MAX_ID = 2**63 - 1


def _agent() -> Agent:
    agent = current_agent()
    assert agent is not None  # the guard returned 401 otherwise
    return agent


def _conversation_or_404(conversation_id: int) -> Conversation:
    conversation = db().get(Conversation, conversation_id)
    if conversation is None:
        raise NotFound(f"conversation {conversation_id} not found", field="conversation_id")
    return conversation


def _json_object() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise InvalidInput("The request body must be a JSON object.")
    return body


def _optional_id(value: Any, field: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_ID:
        raise InvalidInput(f"{field} must be a message id (a whole number from 0), not {value!r}.", field=field)
    return value


def parse_stale_check(values: Any) -> tuple[int | None, bool]:
    """Return ``(seen_message_id, confirm_stale)`` from a reply's JSON body or form.

    Both are optional: without ``seen_message_id`` the reply is sent without the check for
    newer messages. ``confirm_stale`` accepts true/false, and in a form also "1"/"0".
    """
    seen = _optional_id(values.get("seen_message_id"), "seen_message_id")
    confirm = values.get("confirm_stale", False)
    if isinstance(confirm, str):
        confirm = {"1": True, "true": True, "0": False, "false": False, "": False}.get(confirm.strip().lower(), confirm)
    if not isinstance(confirm, bool):
        raise InvalidInput("confirm_stale must be true or false.", field="confirm_stale")
    return seen, confirm


# ---- Notes ---------------------------------------------------------------------------------


@blueprint.get("/conversations/<id:conversation_id>/notes")
def notes(conversation_id: int) -> Any:
    session = db()
    _conversation_or_404(conversation_id)
    return jsonify({"items": [note_to_dict(note) for note in list_notes(session, conversation_id)]})


@blueprint.post("/conversations/<id:conversation_id>/notes")
def add_note(conversation_id: int) -> Any:
    agent = _agent()
    session = db()
    note = create_note(session, conversation_id, agent.id, _json_object().get("text"))
    data = note_to_dict(note)
    session.commit()
    log.info("agent %s added note %s to conversation %s, mentioning %s", agent.id, note.id, conversation_id,
             [mention["id"] for mention in data["mentions"]])
    return jsonify(data), 201


# ---- Mentions ------------------------------------------------------------------------------


@blueprint.get("/mentions")
def mentions() -> Any:
    agent = _agent()
    session = db()
    unread_only = request.args.get("unread", "").lower() in ("1", "true", "yes")
    limit = request.args.get("limit", "50")
    if not limit.isdigit() or not 1 <= int(limit) <= 100:
        raise InvalidInput("limit must be a whole number from 1 to 100.", field="limit")
    items = list_mentions(session, agent.id, unread_only=unread_only, limit=int(limit))
    return jsonify({
        "items": [mention_to_dict(mention) for mention in items],
        "unread_count": count_unread_mentions(session, agent.id),
    })


@blueprint.post("/mentions/read")
def read_mentions() -> Any:
    agent = _agent()
    body = request.get_json(silent=True)
    if body is None and not request.get_data():
        body = {}
    if not isinstance(body, dict):
        raise InvalidInput("The request body must be a JSON object.")
    conversation_id = body.get("conversation_id")
    if conversation_id is not None and (not isinstance(conversation_id, int) or isinstance(conversation_id, bool)):
        raise InvalidInput("conversation_id must be a conversation id.", field="conversation_id")
    session = db()
    changed = mark_mentions_read(
        session, agent.id, mention_ids=body.get("mention_ids"), conversation_id=conversation_id,
    )
    unread = count_unread_mentions(session, agent.id)
    session.commit()
    return jsonify({"marked_read": changed, "unread_count": unread})


# ---- Canned responses ----------------------------------------------------------------------


@blueprint.get("/canned-responses")
def canned_responses() -> Any:
    agent = _agent()
    session = db()
    context = None
    conversation_id = request.args.get("conversation_id")
    if conversation_id is not None:
        if not conversation_id.isdigit() or not 0 < int(conversation_id) <= MAX_ID:
            raise InvalidInput("conversation_id must be a conversation id.", field="conversation_id")
        context = PlaceholderContext(_conversation_or_404(int(conversation_id)), agent)
    return jsonify({
        "items": [canned_response_to_dict(item, agent, context) for item in list_canned_responses(session, agent)],
        "placeholders": placeholder_list(),
    })


@blueprint.post("/canned-responses")
def add_canned_response() -> Any:
    agent = _agent()
    body = _json_object()
    session = db()
    response = create_canned_response(session, agent, body.get("title"), body.get("body"), body.get("shared", False))
    data = canned_response_to_dict(response, agent)
    session.commit()
    log.info("agent %s created canned response %s", agent.id, response.id)
    return jsonify(data), 201


@blueprint.patch("/canned-responses/<id:response_id>")
def change_canned_response(response_id: int) -> Any:
    agent = _agent()
    session = db()
    response = update_canned_response(session, agent, response_id, _json_object())
    data = canned_response_to_dict(response, agent)
    session.commit()
    return jsonify(data)


@blueprint.delete("/canned-responses/<id:response_id>")
def remove_canned_response(response_id: int) -> Any:
    agent = _agent()
    session = db()
    delete_canned_response(session, agent, response_id)
    session.commit()
    log.info("agent %s deleted canned response %s", agent.id, response_id)
    return Response(status=204)
