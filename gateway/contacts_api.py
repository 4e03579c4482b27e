"""The contact routes of the JSON API: profile, search, edits and merge.

Every signed-in agent may read, edit and merge contacts. Contacts are shared by the whole
team, and joining a customer's WhatsApp and email is everyday support work. The merge
record keeps who did it. As elsewhere in the API, malformed input is a 400. A repeated
merge, a merge into itself or a merge that keeps failing on concurrent ones is a 409. Two
contacts that cannot become one (both have an email address, or both a phone number) are a
422.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, jsonify, request
from sqlalchemy.exc import OperationalError

from gateway.auth import current_agent, db, error_response
from gateway.reports import workspace_zone
from gateway.reprocess import newest_channel_name
from inbox.contact_merge import CannotMerge, merge_contacts
from inbox.contacts import (
    contact_to_dict,
    conversation_summary,
    get_contact_or_404,
    list_contact_conversations,
    list_contact_merges,
    merge_to_dict,
    search_contacts,
    update_contact,
)
from inbox.errors import Conflict, Forbidden, InboxError, InvalidInput, NotFound
from inbox.models import Agent, Contact, utcnow
from inbox.proactive.quiet_hours import contact_zone_and_source

log = logging.getLogger(__name__)

blueprint = Blueprint("contacts_api", __name__, url_prefix="/api/v1")

CONVERSATION_PAGE = 20
# A merge that PostgreSQL aborts as a deadlock or serialization failure is tried again this
# many times in all before the API returns 409 merge_busy.
MERGE_ATTEMPTS = 3
# SQLSTATE codes of a transaction aborted only because of a concurrent one.
LOCK_CONFLICT_STATES = frozenset({"40001", "40P01"})


def _is_lock_conflict(error: OperationalError) -> bool:
    """Return whether ``error`` is a deadlock or serialization failure that a retry may clear."""
    return getattr(error.orig, "sqlstate", None) in LOCK_CONFLICT_STATES


@blueprint.errorhandler(InboxError)
def _inbox_error(error: InboxError) -> Any:
    if isinstance(error, NotFound):
        status = 404
    elif isinstance(error, Conflict):
        status = 409
    elif isinstance(error, Forbidden):
        status = 403
    elif isinstance(error, CannotMerge):
        status = 422
    else:
        status = 400
    return error_response(status, error.code, error.message, error.field)


def _agent() -> Agent:
    agent = current_agent()
    assert agent is not None  # the guard returned 401 otherwise
    return agent


def _json_object() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise InvalidInput("The request body must be a JSON object.")
    return body


def _int_arg(name: str, default: int, maximum: int) -> int:
    value = request.args.get(name)
    if value is None:
        return default
    if not value.isascii() or not value.isdigit() or not 1 <= int(value) <= maximum:
        raise InvalidInput(f"{name} must be a whole number from 1 to {maximum}.", field=name)
    return int(value)


@blueprint.get("/contacts")
def search() -> Any:
    query = request.args.get("q")
    if query is None:
        raise InvalidInput("Give q, the text to look for in names, email addresses and phone numbers.", field="q")
    found = search_contacts(db(), query, limit=_int_arg("limit", 20, 50))
    return jsonify({"items": [contact_to_dict(contact) for contact in found]})


@blueprint.get("/contacts/<id:contact_id>")
def profile(contact_id: int) -> Any:
    session = db()
    contact = get_contact_or_404(session, contact_id)
    page = list_contact_conversations(session, contact.id, limit=_int_arg("limit", CONVERSATION_PAGE, 200))
    return jsonify(
        {
            **contact_to_dict(contact),
            "time_zone_in_use": _zone_in_use(contact),
            "conversations": {
                "items": [conversation_summary(conversation) for conversation in page.items],
                "next_cursor": page.next_cursor,
            },
            "merges": [merge_to_dict(merge) for merge in list_contact_merges(session, contact.id)],
        }
    )


def _zone_in_use(contact: Contact) -> dict[str, str]:
    """Return the zone the contact's quiet hours follow now, and its source (see ``contact_zone_and_source``)."""
    zone, source = contact_zone_and_source(
        contact.time_zone, [identity.value for identity in contact.identities if identity.kind == "phone"],
        workspace_zone(), utcnow(),
    )
    return {"name": zone.key, "source": source}


@blueprint.get("/contacts/<id:contact_id>/conversations")
def conversations(contact_id: int) -> Any:
    session = db()
    get_contact_or_404(session, contact_id)
    page = list_contact_conversations(
        session, contact_id, limit=_int_arg("limit", CONVERSATION_PAGE, 200), cursor=request.args.get("cursor")
    )
    return jsonify(
        {"items": [conversation_summary(conversation) for conversation in page.items], "next_cursor": page.next_cursor}
    )


@blueprint.patch("/contacts/<id:contact_id>")
def edit(contact_id: int) -> Any:
    body = _json_object()
    session = db()
    cleared = "name" in body and isinstance(body["name"], str | None) and not (body["name"] or "").strip()
    channel_name = newest_channel_name(session, contact_id) if cleared else None
    contact = update_contact(session, contact_id, body, channel_name)
    # The id and what the request changed; the whole contact is at GET and in contact.updated.
    data: dict[str, Any] = {"id": contact.id}
    if "name" in body:
        data.update(name=contact.name, name_set_by_agent=bool(contact.name_set_by_agent))
    if "notes" in body:
        data["notes"] = contact.notes or ""
    if "time_zone" in body:
        data.update(time_zone=contact.time_zone, time_zone_in_use=_zone_in_use(contact))
    session.commit()
    log.info("agent %s edited %s of contact %s", _agent().id, " and ".join(sorted(body)), contact_id)
    return jsonify(data)


@blueprint.post("/contacts/<id:contact_id>/merge")
def merge(contact_id: int) -> Any:
    other_id = _json_object().get("other_id")
    if not isinstance(other_id, int) or isinstance(other_id, bool) or not 0 < other_id < 2**63:
        raise InvalidInput("other_id must be the id of the contact to merge into this one.", field="other_id")
    session = db()
    for attempt in range(1, MERGE_ATTEMPTS + 1):
        try:
            record = merge_contacts(session, _agent(), contact_id, other_id)
            session.commit()
            break
        except OperationalError as error:
            session.rollback()
            if not _is_lock_conflict(error):
                raise
            log.warning(
                "merge of contact %s into %s failed on a lock conflict (attempt %s of %s): %s",
                other_id, contact_id, attempt, MERGE_ATTEMPTS, error.orig,
            )
    else:
        raise Conflict(
            "Another change to these contacts was saved at the same time. Reload the contact and merge again.",
            field="other_id", code="merge_busy",
        )
    contact = get_contact_or_404(session, contact_id)
    return jsonify({"contact": contact_to_dict(contact), "merge": merge_to_dict(record)})
