"""The OpenAPI 3.1 description of /api/v1, served at /api/v1/openapi.json."""

from __future__ import annotations

from typing import Any


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERRORS = {
    "401": _json(_ref("Error"), "Not signed in and no valid API token."),
    "403": _json(_ref("Error"), "Missing CSRF token or insufficient role."),
}

_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}
_MESSAGE_ID = {"name": "message_id", "in": "path", "required": True, "schema": {"type": "integer"}}
_CHANNEL_ID = {"name": "channel_id", "in": "path", "required": True, "schema": {"type": "integer"}}

_REPLY_BODY = {
    "type": "object",
    "description": "Either text, or on WhatsApp an approved template.",
    "properties": {
        "text": {"type": "string"},
        "seen_message_id": {"type": "integer", "minimum": 0, "description": "The newest message of the conversation the agent had seen. When a customer message or another agent's reply is newer, the reply is not sent (409 stale_reply). Without it there is no such check."},
        "confirm_stale": {"type": "boolean", "default": False, "description": "Send even though newer messages arrived, after the agent read them."},
        "template": {
            "type": "object",
            "description": "On a Twilio channel content_sid names the template; on a Meta Cloud API channel name and language do.",
            "properties": {
                "content_sid": {"type": "string", "pattern": "^HX[0-9a-fA-F]{32}$", "description": "Twilio channels: the Content SID."},
                "name": {"type": "string", "pattern": "^[a-z0-9_]{1,512}$", "description": "Meta channels: the message template's name."},
                "language": {"type": "string", "description": "Meta channels: the template's language code, such as en_US."},
                "variables": {"type": "object", "additionalProperties": {"type": "string"}, "description": "A value for each placeholder, such as {\"1\": \"Grace\"}: one line of at most 1024 characters, without tabs or other control characters, with at most 4 consecutive spaces."},
            },
        },
    },
}


_REPLY_FORM = {
    "type": "object",
    "description": (
        "A reply with files, on WhatsApp or email. Email: at most 10 files and 15 MB of files in "
        "all, of any type, none empty. WhatsApp: the types WhatsApp takes, at most 16 MB each "
        "(images 5 MB on Meta channels), at most 10 WhatsApp messages per reply. The whole "
        "request may be at most 64 MB."
    ),
    "properties": {
        "text": {"type": "string", "description": "The text; it may be empty when files are attached."},
        "attachments": {
            "type": "array",
            "items": {"type": "string", "format": "binary"},
            "description": "One field per file, with its file name and content type.",
        },
        "seen_message_id": {"type": "integer", "minimum": 0, "description": "As in the JSON body."},
        "confirm_stale": {"type": "string", "enum": ["1", "true", "0", "false"], "description": "As in the JSON body."},
    },
}


def _path_id(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "integer"}}


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "schema": schema, "description": description}


_STATUSES = ["open", "pending", "snoozed", "resolved", "closed"]
_PRIORITIES = ["low", "normal", "high", "urgent"]
_INVALID = _json(_ref("Error"), "Invalid input; field names it.")
_NOT_FOUND = _json(_ref("Error"), "Not found.")
_CONFLICT = _json(_ref("Error"), "The change collides with the current state.")

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "Switchboard API", "version": "1"},
    "servers": [{"url": "/api/v1"}],
    "security": [{"session": []}, {"bearer": []}],
    "paths": {
        "/me": {"get": {"summary": "The signed-in agent", "responses": {"200": _json(_ref("Agent"), "The agent."), **_ERRORS}}},
        "/conversations": {
            "get": {
                "summary": "Conversations, newest activity first (keyset pagination)",
                "parameters": [
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}},
                    {"name": "cursor", "in": "query", "schema": {"type": "string"}, "description": "next_cursor of the previous page"},
                    _query("status", {"enum": _STATUSES}, "Only this status; without it every status but closed."),
                    _query("assignee", {"type": "string"}, '"me", "unassigned" or an agent id.'),
                    _query("team", {"type": "integer"}, "Team id."),
                    _query("channel", {"type": "integer"}, "Channel id."),
                    _query("label", {"type": "integer"}, "Label id."),
                    _query("priority", {"enum": _PRIORITIES}, "Only this priority."),
                    _query("contact", {"type": "integer"}, "Contact id."),
                    _query("q", {"type": "string", "maxLength": 200},
                           "Full-text search of message subjects and text and of the contact's name, email and phone."
                           " Only letters and digits count, every word must match, and each matches words that"
                           " start with it. Each item then has search with the snippet that matched."),
                ],
                "responses": {"200": _json(_ref("ConversationPage"), "One page."), "400": _json(_ref("Error"), "Invalid limit, cursor or filter."), **_ERRORS},
            }
        },
        "/conversations/counts": {
            "get": {
                "summary": "The views of the inbox's left pane with their conversation counts",
                "responses": {"200": _json(_ref("ViewCounts"), "The views."), **_ERRORS},
            }
        },
        "/conversations/bulk": {
            "post": {
                "summary": "Apply one change to many conversations: all of them or none",
                "requestBody": _body({
                    "type": "object",
                    "required": ["conversation_ids", "changes"],
                    "properties": {"conversation_ids": {"type": "array", "items": {"type": "integer"}, "maxItems": 500}, "changes": _ref("Changes")},
                }),
                "responses": {
                    "200": _json({"type": "object", "properties": {"items": {"type": "array", "items": _ref("Conversation")}}}, "Every conversation, changed."),
                    "400": _INVALID,
                    "403": _json(_ref("BulkError"), "A conversation the agent may not change, or a new label by an agent; nothing changed."),
                    "404": _json(_ref("BulkError"), "A conversation not found; nothing changed."),
                    "409": _json(_ref("BulkError"), "A conversation that cannot take the change (merged, or a status it cannot reach); nothing changed."),
                    "401": _ERRORS["401"],
                },
            }
        },
        "/conversations/{id}": {
            "get": {
                "summary": "One conversation with its newest page of messages and its activity log, oldest first",
                "parameters": [
                    _ID,
                    _query("messages_limit", {"type": "integer", "minimum": 1, "maximum": 200, "default": 50},
                           "Messages in the page."),
                ],
                "responses": {"200": _json(_ref("ConversationWithMessages"), "The conversation."), "404": _json(_ref("Error"), "Not found."), **_ERRORS},
            },
            "patch": {
                "summary": "Change status, snooze, priority, labels, team or assignee",
                "parameters": [_ID],
                "requestBody": _body(_ref("Changes")),
                "responses": {"200": _json(_ref("Conversation"), "The changed conversation."), "400": _INVALID, "404": _NOT_FOUND, "409": _CONFLICT, **_ERRORS},
            },
        },
        "/conversations/{id}/merge": {
            "post": {
                "summary": "Merge this conversation into another of the same contact and channel",
                "parameters": [_ID],
                "requestBody": _body({"type": "object", "required": ["target_id"], "properties": {"target_id": {"type": "integer"}}}),
                "responses": {"200": _json(_ref("Conversation"), "The target, with the messages."), "400": _INVALID, "404": _NOT_FOUND, "409": _CONFLICT, **_ERRORS},
            }
        },
        "/conversations/{id}/messages": {
            "get": {
                "summary": "A page of the conversation's messages, oldest first, older than message before",
                "parameters": [
                    _ID,
                    _query("before", {"type": "integer"},
                           "messages_before of the conversation, or before of the previous page; without it the newest page."),
                    _query("limit", {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}, "Messages in the page."),
                ],
                "responses": {"200": _json(_ref("MessagePage"), "One page."), "400": _INVALID, "404": _NOT_FOUND, **_ERRORS},
            },
            "post": {
                "summary": "Reply on the conversation's channel (queued in the outbox)",
                "parameters": [_ID],
                "requestBody": {"required": True, "content": {
                    "application/json": {"schema": _REPLY_BODY},
                    "multipart/form-data": {"schema": _REPLY_FORM},
                }},
                "responses": {
                    "201": _json(_ref("Message"), "The queued reply, or on WhatsApp after the 24-hour window the held one (see held). Its files are in attachments."),
                    "400": _json(_ref("Error"), "Empty or too long, a template that is not approved or lacks a variable, a template variable that WhatsApp rejects (field template.variables.<name>: a line break, tab or other control character, more than 4 consecutive spaces, or over 1024 characters), or files beyond the channel's limits (field attachments: too many, too large, empty, or a type WhatsApp does not take)."),
                    "413": _json(_ref("Error"), "too_large: the request is larger than 64 MB."),
                    "404": _json(_ref("Error"), "Not found."),
                    "409": _json(_ref("StaleReplyError"), "stale_reply: messages arrived after seen_message_id, listed in messages, and nothing was sent; outside_window: free text after the 24-hour window where the workspace rejects it; opted_out: a template after the window to a contact who opted out; waba_id_missing: a template on a Meta channel without its WhatsApp Business Account ID."),
                    "502": _json(_ref("Error"), "templates_unavailable: Twilio's Content API or Meta's Graph API could not be read."),
                    **_ERRORS,
                },
            }
        },
        "/messages/{message_id}/cancel": {
            "post": {
                "summary": "Cancel a held WhatsApp reply, so that it is never sent",
                "parameters": [_MESSAGE_ID],
                "responses": {"200": _json(_ref("Message"), "The cancelled reply."), "404": _json(_ref("Error"), "Not found."), "409": _json(_ref("Error"), "not_held: the reply is not held (sent, failed or cancelled)."), **_ERRORS},
            }
        },
        "/messages/{message_id}/email": {
            "post": {
                "summary": "Resend a failed WhatsApp reply by email, through the outbox",
                "parameters": [_MESSAGE_ID],
                "responses": {
                    "201": _json(_ref("Message"), "The queued email, in the contact's email conversation."),
                    "404": _json(_ref("Error"), "Not found."),
                    "409": _json(_ref("Error"), "not_failed, already_resent, no_email (no usable address or no active email channel), or files_over_email_limit (the reply's files exceed what one email reply takes)."),
                    **_ERRORS,
                },
            }
        },
        "/channels/{channel_id}/templates": {
            "get": {
                "summary": "The WhatsApp templates approved for the channel's Twilio account or Meta business account (cached)",
                "parameters": [_CHANNEL_ID, {"name": "refresh", "in": "query", "schema": {"type": "boolean"}, "description": "Read the list from the provider now instead of the cache."}],
                "responses": {
                    "200": _json(_ref("TemplateList"), "The approved templates."),
                    "404": _json(_ref("Error"), "No WhatsApp channel with this id."),
                    "409": _json(_ref("Error"), "waba_id_missing: a Meta channel without its WhatsApp Business Account ID."),
                    "502": _json(_ref("Error"), "templates_unavailable: the provider could not be read and nothing is cached."),
                    **_ERRORS,
                },
            }
        },
        "/conversations/{id}/read": {
            "post": {"summary": "Mark the conversation read", "parameters": [_ID], "responses": {"204": {"description": "Done."}, **_ERRORS}}
        },
        "/attachments/{id}": {
            "get": {"summary": "Download an attachment", "parameters": [_ID], "responses": {"200": {"description": "The file, as a download."}, "404": _json(_ref("Error"), "Not found."), **_ERRORS}}
        },
        "/channels": {
            "get": {
                "summary": "Channels and their health",
                "responses": {"200": _json({"type": "object", "properties": {"items": {"type": "array", "items": _ref("Channel")}}}, "The channels."), **_ERRORS},
            }
        },
        "/channels/{id}": {
            "patch": {
                "summary": "Set the folders an email channel reads and its Sent folder (admin)",
                "parameters": [_ID],
                "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object", "properties": {
                    "imap_folders": {"type": "array", "items": {"type": "string"}, "minItems": 1, "description": "The folders to import mail from, each over its own IMAP connection."},
                    "sent_folder": {"type": ["string", "null"], "description": "Gets a copy of each sent reply; null turns copies off."},
                }}}}},
                "responses": {"200": _json(_ref("Channel"), "The channel with its health."), "400": _json(_ref("Error"), "Invalid folder name or not an email channel."), "404": _json(_ref("Error"), "Not found."), **_ERRORS},
            }
        },
        "/channels/{channel_id}/default-team": {
            "put": {
                "summary": "Set the team new conversations on the channel go to (manager)",
                "parameters": [_path_id("channel_id")],
                "requestBody": _body({"type": "object", "required": ["default_team_id"], "properties": {"default_team_id": {"type": ["integer", "null"]}}}),
                "responses": {"200": {"description": "The channel's id, name and default_team."}, "400": _INVALID, "404": _NOT_FOUND, **_ERRORS},
            }
        },
        "/teams": {
            "get": {"summary": "Teams and their members", "responses": {"200": _json({"type": "object", "properties": {"items": {"type": "array", "items": _ref("Team")}}}, "The teams."), **_ERRORS}},
            "post": {
                "summary": "Create a team (manager)",
                "requestBody": _body(_ref("TeamInput")),
                "responses": {"201": _json(_ref("Team"), "The team."), "400": _INVALID, "404": _json(_ref("Error"), "An agent not found."), "409": _json(_ref("Error"), "The name is taken."), **_ERRORS},
            },
        },
        "/teams/{team_id}": {
            "patch": {
                "summary": "Rename a team or replace its members (manager)",
                "parameters": [_path_id("team_id")],
                "requestBody": _body(_ref("TeamInput")),
                "responses": {"200": _json(_ref("Team"), "The team."), "400": _INVALID, "404": _NOT_FOUND, "409": _json(_ref("Error"), "The name is taken."), **_ERRORS},
            }
        },
        "/labels": {
            "get": {"summary": "Labels, by name", "responses": {"200": _json({"type": "object", "properties": {"items": {"type": "array", "items": _ref("Label")}}}, "The labels."), **_ERRORS}},
            "post": {
                "summary": "Create a label (manager)",
                "requestBody": _body({"type": "object", "required": ["name"], "properties": {"name": {"type": "string", "maxLength": 50}}}),
                "responses": {"201": _json(_ref("Label"), "The label."), "400": _INVALID, "409": _json(_ref("Error"), "A label of that name exists (names ignore case)."), **_ERRORS},
            },
        },
        "/agents": {
            "get": {"summary": "Active agents with presence and workload", "responses": {"200": _json({"type": "object", "properties": {"items": {"type": "array", "items": _ref("AgentWorkload")}}}, "The agents."), **_ERRORS}},
        },
        "/agents/{agent_id}": {
            "patch": {
                "summary": "Set an agent's capacity for automatic assignment (manager)",
                "parameters": [_path_id("agent_id")],
                "requestBody": _body({"type": "object", "required": ["max_open_conversations"], "properties": {"max_open_conversations": {"type": ["integer", "null"], "minimum": 0, "maximum": 1000}}}),
                "responses": {"200": _json(_ref("AgentWorkload"), "The agent."), "400": _INVALID, "404": _NOT_FOUND, **_ERRORS},
            }
        },
        "/payloads": {
            "get": {
                "summary": "Inbound payloads by status (admin)",
                "parameters": [{"name": "status", "in": "query", "schema": {"enum": ["failed", "processed"], "default": "failed"}}],
                "responses": {"200": {"description": "The payloads."}, **_ERRORS},
            }
        },
        "/payloads/{id}/reprocess": {
            "post": {"summary": "Parse a failed payload again and ingest it (admin)", "parameters": [_ID], "responses": {"200": {"description": "The outcome."}, "400": _json(_ref("Error"), "Still unparseable."), **_ERRORS}}
        },
        "/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI 3.1."}, **_ERRORS}}},
    },
    "components": {
        "securitySchemes": {
            "session": {"type": "apiKey", "in": "cookie", "name": "switchboard_session"},
            "bearer": {"type": "http", "scheme": "bearer"},
        },
        "schemas": {
            "Error": {
                "type": "object",
                "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "field": {"type": "string"}}}},
            },
            "Channel": {
                "type": "object",
                "properties": {
                    "id": {"type": "integer"},
                    "kind": {"enum": ["email", "whatsapp"]},
                    "name": {"type": "string"},
                    "address": {"type": "string"},
                    "is_active": {"type": "boolean"},
                    "last_sync_at": {"type": ["string", "null"], "format": "date-time"},
                    "sync_lag_seconds": {"type": ["integer", "null"]},
                    "last_error": {"type": ["string", "null"]},
                    "last_error_at": {"type": ["string", "null"], "format": "date-time"},
                    "webhook_url": {"type": ["string", "null"], "description": "The URL to enter in Twilio's or Meta's console; null for email."},
                    "warnings": {
                        "type": "array",
                        "description": "Problems that need no retry, such as a failed copy of a reply to the Sent folder (code sent_copy_failed).",
                        "items": {"type": "object", "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "at": {"type": "string", "format": "date-time"}}},
                    },
                    "folders": {
                        "type": "array",
                        "description": "Email only: each folder read, with its own health. The channel's sync_lag_seconds is the largest of theirs.",
                        "items": {"type": "object", "properties": {
                            "name": {"type": "string"},
                            "uidvalidity": {"type": ["integer", "null"]},
                            "last_uid": {"type": "integer"},
                            "last_sync_at": {"type": ["string", "null"], "format": "date-time", "description": "When the folder was last read through."},
                            "sync_lag_seconds": {"type": ["integer", "null"]},
                            "last_error": {"type": ["string", "null"]},
                            "last_error_at": {"type": ["string", "null"], "format": "date-time"},
                        }},
                    },
                    "sent_folder": {"type": ["string", "null"], "description": "Email only: the folder that gets a copy of each sent reply; null when copies are off."},
                    "sends": {
                        "type": "object",
                        "description": "Send failures: attempts the provider rejected or could not be reached for, and sent messages it reported failed or undelivered.",
                        "properties": {
                            "failed_last_24h": {"type": "integer"},
                            "last_failure": {"type": ["object", "null"], "description": "The latest failure within 30 days.", "properties": {
                                "at": {"type": "string", "format": "date-time"},
                                "code": {"type": ["string", "null"], "description": "The provider's error code, such as 131026, 21211 or 550."},
                                "message": {"type": "string"},
                            }},
                        },
                    },
                    "settings": {"type": "object", "description": "Admins only. Provider settings with credentials masked."},
                },
            },
            "Agent": {"type": "object", "properties": {"id": {"type": "integer"}, "email": {"type": "string"}, "name": {"type": "string"}, "role": {"enum": ["agent", "manager", "admin"]}}},
            "Conversation": {
                "type": "object",
                "properties": {
                    "id": {"type": "integer"},
                    "channel": {"type": "object", "properties": {"id": {"type": "integer"}, "kind": {"enum": ["email", "whatsapp"]}, "name": {"type": "string"}}},
                    "contact": {"type": "object", "properties": {"id": {"type": "integer"}, "name": {"type": ["string", "null"]}, "name_set_by_agent": {"type": "boolean"}, "address": {"type": "string"}, "failing": {"type": ["object", "null"], "description": "Set while mail to the address bounces: since, reason."}, "opted_out": {"type": ["object", "null"], "description": "Set while the contact is opted out of proactive messages: since, keyword."}}},
                    "whatsapp": {
                        "type": ["object", "null"],
                        "description": "WhatsApp conversations only: when the 24-hour window for free text closes (null: closed, the contact never wrote) and what a free-text reply after it does.",
                        "properties": {"window_closes_at": {"type": ["string", "null"], "format": "date-time"}, "outside_window": {"enum": ["hold", "reject"]}},
                    },
                    "subject": {"type": ["string", "null"]},
                    "snippet": {"type": "string"},
                    "search": {**_ref("SearchHit"), "description": "Only in a list with q: the snippet that matched."},
                    "status": {"enum": _STATUSES},
                    "snoozed_until": {"type": ["string", "null"], "format": "date-time", "description": "Set while snoozed."},
                    "priority": {"enum": _PRIORITIES},
                    "assignee": {"type": ["object", "null"], "properties": {"id": {"type": "integer"}, "name": {"type": "string"}}},
                    "team": {"type": ["object", "null"], "properties": {"id": {"type": "integer"}, "name": {"type": "string"}}},
                    "labels": {"type": "array", "items": _ref("Label")},
                    "merged_into_id": {"type": ["integer", "null"], "description": "Set on a closed conversation: where its messages went."},
                    "unread_count": {"type": "integer"},
                    "last_message_at": {"type": "string", "format": "date-time"},
                    "created_at": {"type": "string", "format": "date-time"},
                    "updated_at": {"type": "string", "format": "date-time", "description": "When the conversation row last changed. Of two copies, the later one is current."},
                },
            },
            "ConversationPage": {"type": "object", "properties": {"items": {"type": "array", "items": _ref("Conversation")}, "next_cursor": {"type": ["string", "null"]}, "last_event_id": {"type": "integer", "description": "The newest event id when the page was read; replay events after it."}}},
            "ConversationWithMessages": {"allOf": [_ref("Conversation"), {"type": "object", "properties": {"messages": {"type": "array", "items": _ref("Message")}, "messages_before": {"type": ["integer", "null"], "description": "Pass as before to GET /conversations/{id}/messages for the older page; null when messages starts with the first message."}, "activities": {"type": "array", "items": _ref("Activity")}, "notes": {"type": "array", "items": _ref("Note")}}}]},
            "MessagePage": {"type": "object", "properties": {"items": {"type": "array", "items": _ref("Message")}, "before": {"type": ["integer", "null"], "description": "before for the next older page; null at the first message."}}},
            "SearchHit": {
                "type": "object",
                "description": "Where a search matched: the newest matching message, or the contact (message_id null). The parts are plain text; match marks the found words.",
                "properties": {
                    "message_id": {"type": ["integer", "null"]},
                    "parts": {"type": "array", "items": {"type": "object", "properties": {"text": {"type": "string"}, "match": {"type": "boolean"}}}},
                },
            },
            "Changes": {
                "type": "object",
                "description": "Only the fields given change.",
                "properties": {
                    "status": {"enum": ["open", "pending", "snoozed", "resolved"]},
                    "snoozed_until": {"type": "string", "format": "date-time", "description": 'Required with status "snoozed": a future time with a zone, at most 366 days ahead.'},
                    "priority": {"enum": _PRIORITIES},
                    "assignee_id": {"oneOf": [{"type": "integer"}, {"type": "null"}, {"const": "auto"}], "description": '"auto" assigns round robin within the (new) team.'},
                    "team_id": {"type": ["integer", "null"]},
                    "add_labels": {"type": "array", "items": {"type": "string"}, "description": "Label names; a new name creates the label (managers and admins only)."},
                    "remove_labels": {"type": "array", "items": {"type": "string"}},
                },
            },
            "BulkError": {
                "type": "object",
                "properties": {"error": {"type": "object", "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "field": {"type": "string"}, "items": {"type": "array", "items": {"type": "object", "properties": {"conversation_id": {"type": "integer"}, "code": {"type": "string"}, "message": {"type": "string"}}}}}}},
            },
            "Activity": {
                "type": "object",
                "properties": {
                    "id": {"type": "integer"},
                    "conversation_id": {"type": "integer"},
                    "agent": {"type": ["object", "null"], "description": "Null for changes the system made."},
                    "action": {"enum": ["status", "priority", "assignee", "team", "label_added", "label_removed", "merged_into", "merged_from"]},
                    "details": {"type": "object"},
                    "created_at": {"type": "string", "format": "date-time"},
                },
            },
            "ViewCounts": {
                "type": "object",
                "properties": {
                    "views": {"type": "array", "items": {"type": "object", "properties": {"key": {"type": "string"}, "name": {"type": "string"}, "group": {"enum": ["inbox", "status", "team"]}, "params": {"type": "object", "description": "Query parameters of GET /conversations that list the view."}, "count": {"type": "integer"}}}},
                    "last_event_id": {"type": "integer"},
                },
            },
            "Label": {"type": "object", "properties": {"id": {"type": "integer"}, "name": {"type": "string"}}},
            "Team": {"type": "object", "properties": {"id": {"type": "integer"}, "name": {"type": "string"}, "members": {"type": "array", "items": {"type": "object"}}}},
            "TeamInput": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 80}, "agent_ids": {"type": "array", "items": {"type": "integer"}}}},
            "AgentWorkload": {
                "type": "object",
                "properties": {
                    "id": {"type": "integer"}, "name": {"type": "string"}, "email": {"type": "string"}, "role": {"type": "string"},
                    "online": {"type": "boolean"}, "open_assigned": {"type": "integer"},
                    "max_open_conversations": {"type": ["integer", "null"], "description": "Capacity for automatic assignment; null for no limit."},
                },
            },
            "Message": {
                "type": "object",
                "properties": {
                    "id": {"type": "integer"},
                    "conversation_id": {"type": "integer"},
                    "direction": {"enum": ["inbound", "outbound"]},
                    "channel_kind": {"enum": ["email", "whatsapp"]},
                    "author": {"type": "object"},
                    "subject": {"type": ["string", "null"]},
                    "text": {"type": "string"},
                    "html": {"type": ["string", "null"], "description": "Sanitized email HTML."},
                    "created_at": {"type": "string", "format": "date-time"},
                    "delivery_status": {"enum": [None, "queued", "sent", "delivered", "read", "undelivered", "failed"]},
                    "error": {"type": ["string", "null"]},
                    "visible_text": {"type": ["string", "null"], "description": "For email, the reply without quoted history and signature; null when nothing is folded."},
                    "automatic": {"enum": [None, "auto_reply", "bounce"], "description": "Set on auto-replies and bounces, which never get an automatic answer."},
                    "thread_reason": {"type": ["string", "null"], "description": "The rule that placed an inbound message in this conversation."},
                    "retry": {
                        "type": ["object", "null"],
                        "description": "Set while a queued reply waits for another attempt.",
                        "properties": {"attempts": {"type": "integer"}, "next_attempt_at": {"type": "string", "format": "date-time"}, "last_error": {"type": "string"}},
                    },
                    "attachments": {"type": "array", "items": {"type": "object"}, "description": "Files of the message, inbound or a reply's: id, filename, content_type, size, status, and url for download once stored."},
                    "template": {"type": ["object", "null"], "description": "The WhatsApp template sent instead of text: content_sid and variables on Twilio channels, name, language and variables on Meta channels. text is its rendered form."},
                    "held": {"type": ["object", "null"], "description": "Set while a WhatsApp reply waits for the customer to write: since, reason (outside_window or window_error)."},
                    "cancelled": {"type": "boolean", "description": "A held reply that an agent cancelled; it is never sent."},
                    "email_fallback": {
                        "type": ["object", "null"],
                        "description": "Failed WhatsApp replies only: the email that resent it (message_id, conversation_id), or whether one can be sent (available).",
                        "properties": {"message_id": {"type": ["integer", "null"]}, "conversation_id": {"type": ["integer", "null"]}, "available": {"type": "boolean"}},
                    },
                    "content": {
                        "type": ["object", "null"],
                        "description": "WhatsApp content beside the text, by type: location (latitude, longitude, label, address, url), contacts (count), button (text, payload), list (id, title), reaction (emoji, null when removed).",
                    },
                    "reply_to": {
                        "type": ["object", "null"],
                        "description": "The message this one quotes or reacts to: id, conversation_id, direction, snippet.",
                    },
                    "parts": {
                        "type": "array",
                        "description": "For a reply sent as several WhatsApp messages: each part's position, provider_message_id, delivery_status and error.",
                        "items": {"type": "object"},
                    },
                    "satisfaction": {
                        "type": ["object", "null"],
                        "description": "Set on a customer's answer to the satisfaction question; low is true for a rating of 1 to 3 and for a no.",
                        "properties": {"kind": {"enum": ["rating", "yes_no"]}, "score": {"type": "integer", "description": "1 to 5 for a rating; 1 for yes and 0 for no."}, "low": {"type": "boolean"}},
                    },
                },
            },
            "TemplateList": {
                "type": "object",
                "properties": {
                    "provider": {"enum": ["twilio", "meta"]},
                    "items": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "content_sid": {"type": "string", "description": "Twilio channels only."},
                                "template_id": {"type": "string", "description": "Meta channels only: the message template's id."},
                                "parameter_count": {"type": "integer", "description": "Meta channels only: the number of body placeholders."},
                                "name": {"type": "string"},
                                "language": {"type": ["string", "null"]},
                                "category": {"type": ["string", "null"]},
                                "body": {"type": "string", "description": "The text with placeholders such as {{1}}."},
                                "placeholders": {"type": "array", "items": {"type": "string"}},
                                "variables": {"type": "object", "description": "The template's sample value of each placeholder."},
                            },
                        },
                    },
                    "fetched_at": {"type": "string", "format": "date-time"},
                    "error": {"type": ["string", "null"], "description": "Set when the provider could not be read and the last list is shown."},
                },
            },
        },
    },
}


# ---- Contacts: profile, search, edits, merge (gateway.contacts_api) ----------------------------

_CONVERSATION_PAGE = {
    "type": "object",
    "properties": {
        "items": {"type": "array", "items": _ref("ContactConversation")},
        "next_cursor": {"type": ["string", "null"], "description": "Pass as cursor for the next page; null on the last."},
    },
}

OPENAPI["paths"].update({
    "/contacts": {
        "get": {
            "summary": "Find contacts by name, email address or phone number",
            "parameters": [
                _query("q", {"type": "string", "minLength": 1, "maxLength": 200}, "Text the name or an address contains, in any case; a phone number matches by its digits."),
                _query("limit", {"type": "integer", "minimum": 1, "maximum": 50, "default": 20}, "How many contacts at most."),
            ],
            "responses": {"200": _json({"type": "object", "properties": {"items": {"type": "array", "items": _ref("Contact")}}}, "Matching contacts, newest first; merged-away ones are left out."), "400": _INVALID, **_ERRORS},
        }
    },
    "/contacts/{id}": {
        "get": {
            "summary": "A contact's profile: addresses, notes, conversations and merge history",
            "parameters": [_ID, _query("limit", {"type": "integer", "minimum": 1, "maximum": 200, "default": 20}, "How many conversations on the first page.")],
            "responses": {"200": _json(_ref("ContactProfile"), "The profile."), "404": _NOT_FOUND, "400": _INVALID, **_ERRORS},
        },
        "patch": {
            "summary": "Edit a contact's name, notes and time zone",
            "parameters": [_ID],
            "requestBody": _body({"type": "object", "minProperties": 1, "additionalProperties": False, "properties": {
                "name": {"type": ["string", "null"], "maxLength": 200, "description": "Empty or null gives the name back to the channel; otherwise channel names never overwrite it."},
                "notes": {"type": ["string", "null"], "maxLength": 10000, "description": "Free text; empty or null clears it."},
                "time_zone": {"type": ["string", "null"], "maxLength": 64, "description": "An IANA time zone name such as Europe/Berlin, spaces around it removed; an unknown name is a 400; empty or null clears it."},
            }}),
            "responses": {"200": _json({"type": "object", "description": "id and the fields the request changed: name and name_set_by_agent, notes, time_zone."}, "What changed."), "400": _json(_ref("Error"), "The body is not a JSON object."), "404": _NOT_FOUND, "409": _json(_ref("Error"), "The contact was merged into another (code contact_merged)."), "400": _INVALID, **_ERRORS},
        },
    },
    "/contacts/{id}/conversations": {
        "get": {
            "summary": "One page of a contact's conversations, newest activity first",
            "parameters": [
                _ID,
                _query("limit", {"type": "integer", "minimum": 1, "maximum": 200, "default": 20}, "Page size."),
                _query("cursor", {"type": "string"}, "next_cursor of the previous page."),
            ],
            "responses": {"200": _json(_CONVERSATION_PAGE, "The page."), "404": _NOT_FOUND, "400": _INVALID, **_ERRORS},
        }
    },
    "/contacts/{id}/merge": {
        "post": {
            "summary": "Merge another contact into this one: addresses, conversations, messages, notes and opt-out move here",
            "parameters": [_ID],
            "requestBody": _body({"type": "object", "required": ["other_id"], "properties": {"other_id": {"type": "integer", "description": "The contact that is merged away."}}}),
            "responses": {
                "200": _json({"type": "object", "properties": {"contact": _ref("Contact"), "merge": _ref("ContactMerge")}}, "The kept contact and the merge record."),
                "400": _INVALID,
                "404": _NOT_FOUND,
                "409": _json(_ref("Error"), "code same_contact (into itself), already_merged (a repeat), contact_merged (this contact was merged away) or merge_busy (aborted three times by concurrent changes; nothing changed)."),
                "422": _json(_ref("Error"), "code address_kind_taken: both contacts have an email address, or both a phone number."),
                **_ERRORS,
            },
        }
    },
})

_IDENTITY = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "kind": {"type": "string", "enum": ["email", "phone"]},
        "value": {"type": "string", "description": "A lower-case email address or an E.164 phone number."},
        "created_at": {"type": "string", "format": "date-time"},
        "failing": {"type": ["object", "null"], "description": "Set while mail to the address bounces: since, reason."},
    },
}

OPENAPI["components"]["schemas"].update({
    "Contact": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "name": {"type": ["string", "null"]},
            "name_set_by_agent": {"type": "boolean"},
            "notes": {"type": "string"},
            "time_zone": {"type": ["string", "null"], "description": "The contact's IANA time zone, which quiet hours follow; null uses the phone number's zone, else the workspace's."},
            "created_at": {"type": "string", "format": "date-time"},
            "merged_into_id": {"type": ["integer", "null"], "description": "Set on a contact that was merged into another."},
            "opted_out": {"type": ["object", "null"], "description": "Set while the customer has opted out of proactive WhatsApp messages: since, keyword."},
            "identities": {"type": "array", "items": _IDENTITY},
        },
    },
    "ContactConversation": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "channel": {"type": "object", "description": "id, kind, name."},
            "subject": {"type": ["string", "null"]},
            "snippet": {"type": "string"},
            "status": {"type": "string", "enum": _STATUSES},
            "last_message_at": {"type": "string", "format": "date-time"},
            "created_at": {"type": "string", "format": "date-time"},
        },
    },
    "ContactMerge": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "kept_contact_id": {"type": "integer"},
            "merged_contact_id": {"type": "integer"},
            "merged_name": {"type": ["string", "null"], "description": "The merged contact's name at the time."},
            "merged_identities": {"type": "array", "items": {"type": "object", "description": "kind, value."}},
            "details": {"type": "object", "description": "conversation_ids, message_count, notes_moved, opted_out."},
            "agent": {"type": ["object", "null"], "description": "Who merged: id, name."},
            "created_at": {"type": "string", "format": "date-time"},
        },
    },
    "ContactProfile": {
        "allOf": [_ref("Contact")],
        "type": "object",
        "properties": {
            "time_zone_in_use": {
                "type": "object",
                "description": "The zone quiet hours follow now: name, and source contact (time_zone is set), phone (a phone number's country) or workspace.",
                "properties": {"name": {"type": "string"}, "source": {"type": "string", "enum": ["contact", "phone", "workspace"]}},
            },
            "conversations": _CONVERSATION_PAGE,
            "merges": {"type": "array", "items": _ref("ContactMerge"), "description": "Merges into this contact, newest first."},
        },
    },
})


# ---- Proactive update templates (gateway.proactive_api) -------------------------------------

_TEMPLATE_ID = _path_id("template_id")
_MANAGER = "Needs the manager or admin role."
_INVALID_TEMPLATE = _json(
    _ref("TemplateProblems"), "The template is invalid; error.problems lists each problem with its field and line.",
)
_PREVIEW_PICK = {
    "description": 'The conversation to preview against: its id, or its reference such as "#42". '
                   "Without it the preview uses sample values.",
    "type": ["integer", "string", "null"],
}

OPENAPI["paths"].update({
    "/update-templates": {
        "get": {
            "summary": "Proactive update templates, by name",
            "description": _MANAGER,
            "responses": {"200": _json({"type": "object", "properties": {"items": {"type": "array", "items": _ref("UpdateTemplate")}}}, "The templates."), **_ERRORS},
        },
        "post": {
            "summary": "Create an update template (disabled unless enabled is true)",
            "description": _MANAGER,
            "requestBody": _body(_ref("UpdateTemplateFields")),
            "responses": {"201": _json(_ref("UpdateTemplate"), "The new template."), "400": _INVALID, "422": _INVALID_TEMPLATE, **_ERRORS},
        },
    },
    "/update-templates/catalogue": {
        "get": {
            "summary": "The placeholders, triggers with their parameters, and condition keys",
            "description": _MANAGER,
            "responses": {"200": _json({"type": "object"}, "placeholders (name, description, example), triggers (name, params), conditions."), **_ERRORS},
        },
    },
    "/update-templates/validate": {
        "post": {
            "summary": "Validate template fields without saving them",
            "description": f"{_MANAGER} Send id as well to check the name against other templates than that one.",
            "requestBody": _body(_ref("UpdateTemplateFields")),
            "responses": {"200": _json({"type": "object", "properties": {"valid": {"const": True}, "problems": {"type": "array", "maxItems": 0}}}, "The fields are valid."), "422": _INVALID_TEMPLATE, **_ERRORS},
        },
    },
    "/update-templates/preview": {
        "post": {
            "summary": "Render unsaved template fields for a conversation or with sample values",
            "description": _MANAGER,
            "requestBody": _body({
                "type": "object",
                "required": ["template"],
                "properties": {"template": _ref("UpdateTemplateFields"), "conversation": _PREVIEW_PICK},
            }),
            "responses": {"200": _json(_ref("UpdatePreview"), "The rendered update."), "400": _INVALID, "404": _NOT_FOUND, "422": _INVALID_TEMPLATE, **_ERRORS},
        },
    },
    "/update-templates/{template_id}": {
        "get": {"parameters": [_TEMPLATE_ID], "summary": "One update template", "description": _MANAGER, "responses": {"200": _json(_ref("UpdateTemplate"), "The template."), "404": _NOT_FOUND, **_ERRORS}},
        "patch": {"parameters": [_TEMPLATE_ID], 
            "summary": "Change some fields of an update template",
            "description": f"{_MANAGER} The whole template is validated after the change; on 422 nothing changes.",
            "requestBody": _body(_ref("UpdateTemplateFields")),
            "responses": {"200": _json(_ref("UpdateTemplate"), "The changed template."), "400": _INVALID, "404": _NOT_FOUND, "422": _INVALID_TEMPLATE, **_ERRORS},
        },
        "delete": {"parameters": [_TEMPLATE_ID],
            "summary": "Delete an update template",
            "description": f"{_MANAGER} Its update log rows stay, and the updates it holds for quiet hours "
                           "are skipped with `template_deleted`. Disabling it instead keeps it for later.",
            "responses": {"204": {"description": "Deleted."}, "404": _NOT_FOUND, **_ERRORS},
        },
    },
    "/update-templates/{template_id}/enable": {
        "post": {"parameters": [_TEMPLATE_ID], "summary": "Enable an update template, after validating it again", "description": _MANAGER, "responses": {"200": _json(_ref("UpdateTemplate"), "The template."), "404": _NOT_FOUND, "422": _INVALID_TEMPLATE, **_ERRORS}},
    },
    "/update-templates/{template_id}/disable": {
        "post": {"parameters": [_TEMPLATE_ID], "summary": "Disable an update template", "description": _MANAGER, "responses": {"200": _json(_ref("UpdateTemplate"), "The template."), "404": _NOT_FOUND, "422": _INVALID_TEMPLATE, **_ERRORS}},
    },
    "/update-templates/{template_id}/preview": {
        "post": {"parameters": [_TEMPLATE_ID], 
            "summary": "Render a saved update template for a conversation or with sample values",
            "description": f"{_MANAGER} The body is optional.",
            "requestBody": {"required": False, "content": {"application/json": {"schema": {"type": "object", "properties": {"conversation": _PREVIEW_PICK}}}}},
            "responses": {"200": _json(_ref("UpdatePreview"), "The rendered update."), "400": _INVALID, "404": _NOT_FOUND, "422": _INVALID_TEMPLATE, **_ERRORS},
        },
    },
    "/conversations/{id}/estimate": {
        "get": {
            "summary": "The conversation's queue position and estimated first-response and resolution times",
            "parameters": [_ID],
            "responses": {"200": _json(_ref("Estimate"), "The estimate."), "404": _NOT_FOUND, **_ERRORS},
        },
    },
})

_DURATION = {
    "type": ["object", "null"],
    "description": "Null when there is too little history, or the milestone has passed.",
    "properties": {"seconds": {"type": "integer"}, "text": {"type": "string", "description": 'For people, such as "about 3 hours".'}},
}

OPENAPI["components"]["schemas"].update({
    "UpdateTemplateFields": {
        "type": "object",
        "description": "The editable fields of an update template. Create needs name, trigger and something to send; "
                       "PATCH takes any subset.",
        "properties": {
            "name": {"type": "string", "maxLength": 120},
            "trigger": {"enum": ["status_changed", "assigned", "no_agent_reply", "queue_wait", "first_response_at_risk", "periodic", "resolved"]},
            "trigger_params": {"type": "object", "description": 'Per trigger: to_status and from_status; hours and business_hours; every_hours and business_hours. For example {"hours": 4}.'},
            "conditions": {
                "type": "object",
                "description": "Optional lists; an empty or missing list matches every conversation.",
                "properties": {
                    "channels": {"type": "array", "items": {"enum": ["email", "whatsapp"]}},
                    "team_ids": {"type": "array", "items": {"type": "integer"}},
                    "priorities": {"type": "array", "items": {"enum": _PRIORITIES}},
                    "labels": {"type": "array", "items": {"type": "string"}, "description": "Label names; any one of them matches."},
                    "statuses": {"type": "array", "items": {"enum": ["open", "pending", "snoozed", "resolved"]}},
                },
            },
            "email_subject": {"type": "string", "description": "Jinja2 source, one line."},
            "email_body": {"type": "string", "description": "Jinja2 source, plain text."},
            "whatsapp_body": {"type": "string", "description": "Jinja2 source, plain text, sent inside the 24-hour window."},
            "whatsapp_content_sid": {"type": ["string", "null"], "pattern": "^HX[0-9a-fA-F]{32}$", "description": "The approved template sent outside the 24-hour window."},
            "whatsapp_variables": {"type": "object", "additionalProperties": {"type": "string"}, "description": 'Variable number to placeholder name, such as {"1": "customer_name"}.'},
            "enabled": {"type": "boolean"},
        },
    },
    "UpdateTemplate": {
        "allOf": [
            _ref("UpdateTemplateFields"),
            {
                "type": "object",
                "properties": {
                    "id": {"type": "integer"},
                    "created_by": {"type": ["object", "null"], "properties": {"id": {"type": "integer"}, "name": {"type": "string"}}},
                    "created_at": {"type": "string", "format": "date-time"},
                    "updated_at": {"type": "string", "format": "date-time"},
                },
            },
        ],
    },
    "TemplateProblems": {
        "type": "object",
        "properties": {
            "error": {
                "type": "object",
                "properties": {
                    "code": {"const": "invalid_template"},
                    "message": {"type": "string"},
                    "field": {"type": "string"},
                    "problems": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "field": {"type": "string"},
                                "line": {"type": ["integer", "null"], "description": "1-based line within the field."},
                                "reason": {"type": "string"},
                            },
                        },
                    },
                },
            },
        },
    },
    "UpdatePreview": {
        "type": "object",
        "properties": {
            "conversation": {"type": ["object", "null"], "description": "id, reference, subject, status, channel, contact_name."},
            "applies": {"type": ["boolean", "null"], "description": "Whether the conversation meets the conditions; null for sample values."},
            "sends": {
                "type": ["string", "null"],
                "enum": ["email", "whatsapp_body", "whatsapp_template", None],
                "description": "The version the conversation's channel would get now: the email, the WhatsApp text inside the 24-hour window, or the approved template outside it. Null for sample values, or when the channel would get nothing. Opt-outs and the daily cap are not checked.",
            },
            "nothing_reason": {
                "type": ["object", "null"],
                "description": "Why the conversation would get no update; null when one would go, and for sample values. The conditions are checked first, as when sending, so with conditions_not_met `sends` may still name a version.",
                "properties": {
                    "code": {"type": "string", "enum": ["conditions_not_met", "no_content", "outside_window"],
                             "description": "conditions_not_met: the conversation does not meet the conditions. no_content: the template has nothing for this channel. outside_window: the 24-hour window is closed and there is no approved template that this channel can send."},
                    "message": {"type": "string", "description": "The reason in plain words, for a person."},
                },
                "required": ["code", "message"],
            },
            "deferred": {
                "type": ["object", "null"],
                "description": "Set when the update would go but quiet hours hold it now; null otherwise.",
                "properties": {
                    "code": {"type": "string", "enum": ["quiet_hours"]},
                    "message": {"type": "string", "description": "Until when and why, in plain words, for a person."},
                    "until": {"type": "string", "format": "date-time", "description": "The end of the quiet hours, in UTC."},
                },
                "required": ["code", "message", "until"],
            },
            "context": {"type": "object", "description": "The placeholder values used."},
            "rendered": {
                "type": "object",
                "properties": {
                    "subject": {"type": "string"},
                    "email_body": {"type": "string"},
                    "whatsapp_body": {"type": "string"},
                    "whatsapp_content_sid": {"type": ["string", "null"]},
                    "whatsapp_variables": {"type": "object", "additionalProperties": {"type": "string"}},
                },
            },
        },
    },
    "Estimate": {
        "type": "object",
        "properties": {
            "queue_position": {"type": "integer", "description": "1 is next; 0 when the conversation is not open."},
            "first_response": _DURATION,
            "resolution": _DURATION,
            "basis": {"type": ["string", "null"], "enum": ["team", "workspace", None], "description": "Whose history the times come from."},
            "samples": {"type": "integer", "description": "The larger of the counts of first responses and resolutions in that history."},
        },
    },
})


# ---- Notes, mentions and canned responses ---------------------------------------------------

_RESPONSE_ID = _path_id("response_id")

OPENAPI["paths"].update({
    "/conversations/{id}/notes": {
        "get": {
            "summary": "The conversation's internal notes, oldest first",
            "parameters": [_ID],
            "responses": {"200": _json({"type": "object", "properties": {"items": {"type": "array", "items": _ref("Note")}}}, "The notes."), "404": _NOT_FOUND, **_ERRORS},
        },
        "post": {
            "summary": "Add an internal note, which only agents see; @mentions notify the agents named",
            "parameters": [_ID],
            "requestBody": _body({"type": "object", "required": ["text"], "properties": {"text": {"type": "string", "maxLength": 10000}}}),
            "responses": {"201": _json(_ref("Note"), "The note."), "400": _INVALID, "404": _NOT_FOUND, **_ERRORS},
        },
    },
    "/mentions": {
        "get": {
            "summary": "The signed-in agent's @mentions, newest first, and how many are unread",
            "parameters": [
                _query("unread", {"type": "boolean"}, "Only unread mentions."),
                _query("limit", {"type": "integer", "minimum": 1, "maximum": 100, "default": 50}, "At most this many."),
            ],
            "responses": {"200": _json(_ref("MentionList"), "The mentions."), "400": _INVALID, **_ERRORS},
        }
    },
    "/mentions/read": {
        "post": {
            "summary": "Mark the signed-in agent's mentions read: the listed ones, one conversation's, or all",
            "requestBody": _body({"type": "object", "properties": {
                "mention_ids": {"type": "array", "items": {"type": "integer"}, "maxItems": 100},
                "conversation_id": {"type": "integer"},
            }}),
            "responses": {
                "200": _json({"type": "object", "properties": {"marked_read": {"type": "integer"}, "unread_count": {"type": "integer"}}}, "How many changed, and how many stay unread."),
                "400": _INVALID, "404": _json(_ref("Error"), "A mention id that is not the agent's."), **_ERRORS,
            },
        }
    },
    "/canned-responses": {
        "get": {
            "summary": "The shared canned responses and the agent's personal ones, by title",
            "parameters": [_query("conversation_id", {"type": "integer"}, "Fill the placeholders for this conversation into rendered.")],
            "responses": {"200": _json(_ref("CannedResponseList"), "The responses and the placeholders."), "400": _INVALID, "404": _NOT_FOUND, **_ERRORS},
        },
        "post": {
            "summary": "Create a canned response: personal, or shared (manager)",
            "requestBody": _body(_ref("CannedResponseInput")),
            "responses": {"201": _json(_ref("CannedResponse"), "The response."), "400": _INVALID, **_ERRORS},
        },
    },
    "/canned-responses/{response_id}": {
        "patch": {
            "summary": "Change a canned response's title or body: one's own, or a shared one (manager)",
            "parameters": [_RESPONSE_ID],
            "requestBody": _body({"type": "object", "properties": {"title": {"type": "string"}, "body": {"type": "string"}}}),
            "responses": {"200": _json(_ref("CannedResponse"), "The response."), "400": _INVALID, "404": _NOT_FOUND, **_ERRORS},
        },
        "delete": {
            "summary": "Delete a canned response: one's own, or a shared one (manager)",
            "parameters": [_RESPONSE_ID],
            "responses": {"204": {"description": "Deleted."}, "404": _NOT_FOUND, **_ERRORS},
        },
    },
})

OPENAPI["components"]["schemas"].update({
    "Note": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "conversation_id": {"type": "integer"},
            "author": {"type": "object", "properties": {"id": {"type": "integer"}, "name": {"type": "string"}}},
            "text": {"type": "string"},
            "mentions": {"type": "array", "description": "The agents the note notified: {id, name}.", "items": {"type": "object"}},
            "created_at": {"type": "string", "format": "date-time"},
        },
    },
    "Mention": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "note_id": {"type": "integer"},
            "conversation_id": {"type": "integer"},
            "contact_name": {"type": ["string", "null"]},
            "author": {"type": "object", "properties": {"id": {"type": "integer"}, "name": {"type": "string"}}},
            "snippet": {"type": "string", "description": "The start of the note."},
            "created_at": {"type": "string", "format": "date-time"},
            "read_at": {"type": ["string", "null"], "format": "date-time"},
        },
    },
    "MentionList": {
        "type": "object",
        "properties": {"items": {"type": "array", "items": _ref("Mention")}, "unread_count": {"type": "integer"}},
    },
    "CannedResponseInput": {
        "type": "object",
        "required": ["title", "body"],
        "properties": {
            "title": {"type": "string", "maxLength": 80},
            "body": {"type": "string", "maxLength": 5000, "description": 'Text with placeholders such as {{ customer.first_name | default("there") }}.'},
            "shared": {"type": "boolean", "default": False, "description": "Shared with every agent (managers and admins only)."},
        },
    },
    "CannedResponse": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "title": {"type": "string"},
            "body": {"type": "string"},
            "shared": {"type": "boolean"},
            "editable": {"type": "boolean", "description": "Whether the signed-in agent may change or delete it."},
            "updated_at": {"type": "string", "format": "date-time"},
            "rendered": {"type": "string", "description": "With conversation_id only: the body with its placeholders filled."},
        },
    },
    "CannedResponseList": {
        "type": "object",
        "properties": {
            "items": {"type": "array", "items": _ref("CannedResponse")},
            "placeholders": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}, "description": {"type": "string"}}}},
        },
    },
    "StaleReplyError": {
        "type": "object",
        "properties": {"error": {"type": "object", "properties": {
            "code": {"type": "string"},
            "message": {"type": "string"},
            "field": {"type": "string"},
            "messages": {"type": "array", "items": _ref("Message"), "description": "stale_reply only: what arrived since seen_message_id, oldest first."},
            "newest_message_id": {"type": "integer", "description": "stale_reply only: the id to send as seen_message_id once the agent has read them."},
        }}},
    },
})


# ---- People and access: agent accounts, one's own account, the audit log -------------------------

_AGENT_ID = _path_id("agent_id")
_ADMIN_ERRORS = {**_ERRORS, "403": _json(_ref("Error"), "Missing CSRF token, or not an admin.")}
_NO_CONTENT = {"description": "Done."}

_PEOPLE_PATHS: dict[str, Any] = {
    "/agents/accounts": {
        "get": {
            "summary": "Every agent, active or disabled, with role and last activity (admin)",
            "responses": {"200": _json({"type": "object", "properties": {"items": {"type": "array", "items": _ref("Account")}}}, "The agents, by name."), **_ADMIN_ERRORS},
        }
    },
    "/agents/{agent_id}/role": {
        "put": {
            "summary": "Change an agent's role (admin)",
            "parameters": [_AGENT_ID],
            "requestBody": _body({"type": "object", "required": ["role"], "properties": {"role": {"enum": ["agent", "manager", "admin"]}}}),
            "responses": {"200": _json(_ref("Account"), "The agent."), "400": _INVALID, "404": _NOT_FOUND, "409": _json(_ref("Error"), "last_admin: the only active admin keeps the role."), **_ADMIN_ERRORS},
        }
    },
    "/agents/{agent_id}/disable": {
        "post": {
            "summary": "Disable an agent: sign-ins end, API tokens and live connections stop at once (admin)",
            "parameters": [_AGENT_ID],
            "responses": {"200": _json(_ref("Account"), "The agent; also when already disabled."), "404": _NOT_FOUND, "409": _json(_ref("Error"), "own_account or last_admin."), **_ADMIN_ERRORS},
        }
    },
    "/agents/{agent_id}/enable": {
        "post": {
            "summary": "Enable a disabled agent; their API tokens work again (admin)",
            "parameters": [_AGENT_ID],
            "responses": {"200": _json(_ref("Account"), "The agent; also when already active."), "404": _NOT_FOUND, **_ADMIN_ERRORS},
        }
    },
    "/agents/{agent_id}/password-reset": {
        "post": {
            "summary": "Set a temporary password, or create a one-time reset link (admin)",
            "parameters": [_AGENT_ID],
            "requestBody": {"required": False, "content": {"application/json": {"schema": {"type": "object", "properties": {
                "temporary_password": {"type": "string", "minLength": 10, "maxLength": 200, "description": "The agent must replace it at the next sign-in; their sign-ins end. Without it, a reset link is created."},
            }}}}},
            "responses": {
                "200": _json({"type": "object", "properties": {"agent": _ref("Account"), "reset_url": {"type": ["string", "null"]}, "expires_at": {"type": ["string", "null"], "format": "date-time"}}}, "The agent, and the link when one was created; it is not shown again."),
                "400": _INVALID, "404": _NOT_FOUND, "409": _json(_ref("Error"), "agent_disabled: no link for a disabled agent."), **_ADMIN_ERRORS,
            },
        }
    },
    "/me/password": {
        "post": {
            "summary": "Change one's own password; one's other sign-ins end",
            "requestBody": _body({"type": "object", "required": ["current_password", "new_password"], "properties": {"current_password": {"type": "string"}, "new_password": {"type": "string", "minLength": 10, "maxLength": 200}}}),
            "responses": {"204": _NO_CONTENT, "400": _INVALID, "429": _json(_ref("Error"), "too_many_attempts: 10 attempts in 5 minutes."), **_ERRORS, "403": _json(_ref("Error"), "wrong_password, or a missing CSRF token.")},
        }
    },
    "/me/tokens": {
        "get": {"summary": "One's own API tokens (never the tokens themselves)", "responses": {"200": _json({"type": "object", "properties": {"items": {"type": "array", "items": _ref("ApiToken")}}}, "The tokens."), **_ERRORS}},
        "post": {
            "summary": "Create a personal API token; the response is the only time it is shown",
            "description": "Needs the session cookie of a password sign-in: a request authenticated by an API token gets 403 sign_in_required.",
            "requestBody": _body({"type": "object", "required": ["name"], "properties": {"name": {"type": "string", "maxLength": 200}}}),
            "responses": {"201": _json({"allOf": [_ref("ApiToken"), {"type": "object", "properties": {"token": {"type": "string"}}}]}, "The token."), "400": _INVALID, **_ERRORS, "403": _json(_ref("Error"), "sign_in_required (an API token was sent), or a missing CSRF token.")},
        },
    },
    "/me/tokens/{token_id}": {
        "delete": {"summary": "Revoke one of one's own API tokens", "parameters": [_path_id("token_id")], "responses": {"204": _NO_CONTENT, "404": _NOT_FOUND, **_ERRORS}},
    },
    "/me/sessions": {
        "get": {"summary": "One's own sign-ins that have not ended", "responses": {"200": _json({"type": "object", "properties": {"items": {"type": "array", "items": _ref("SignIn")}}}, "The sign-ins, newest first."), **_ERRORS}},
    },
    "/me/sessions/{session_id}": {
        "delete": {"summary": "End one of one's own sign-ins", "parameters": [_path_id("session_id")], "responses": {"204": _NO_CONTENT, "404": _NOT_FOUND, **_ERRORS}},
    },
    "/audit": {
        "get": {
            "summary": "The audit log of administrative changes, newest first (admin; keyset pagination)",
            "parameters": [
                _query("actor", {"type": "string"}, 'An agent id, or "cli" for the command line.'),
                _query("action", {"type": "string"}, "Actions separated by commas; a name ending in a dot, such as agent., matches every action it starts."),
                _query("target", {"type": "string"}, "TYPE or TYPE:ID, with TYPE agent, team, channel or token."),
                _query("since", {"type": "string", "format": "date-time"}, "From this time on, inclusive."),
                _query("until", {"type": "string", "format": "date-time"}, "Before this time."),
                _query("limit", {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}, "Rows per page."),
                _query("cursor", {"type": "string"}, "next_cursor of the previous page."),
            ],
            "responses": {"200": _json({"type": "object", "properties": {"items": {"type": "array", "items": _ref("AuditEvent")}, "next_cursor": {"type": ["string", "null"]}}}, "One page."), "400": _INVALID, **_ADMIN_ERRORS},
        }
    },
}

_PEOPLE_SCHEMAS: dict[str, Any] = {
    "Account": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"}, "email": {"type": "string"}, "name": {"type": "string"},
            "role": {"enum": ["agent", "manager", "admin"]}, "active": {"type": "boolean"},
            "must_change_password": {"type": "boolean", "description": "The password is temporary; the next sign-in must change it."},
            "last_seen_at": {"type": ["string", "null"], "format": "date-time", "description": "The latest request of one of the agent's sign-ins or tokens, to the minute."},
            "created_at": {"type": "string", "format": "date-time"},
            "max_open_conversations": {"type": ["integer", "null"]},
        },
    },
    "ApiToken": {
        "type": "object",
        "properties": {"id": {"type": "integer"}, "name": {"type": "string"}, "created_at": {"type": "string", "format": "date-time"}, "last_used_at": {"type": ["string", "null"], "format": "date-time"}},
    },
    "SignIn": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"}, "created_at": {"type": "string", "format": "date-time"},
            "last_seen_at": {"type": ["string", "null"], "format": "date-time"},
            "user_agent": {"type": ["string", "null"]}, "ip_address": {"type": ["string", "null"]},
            "current": {"type": "boolean", "description": "The sign-in of this request."},
        },
    },
    "AuditEvent": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "created_at": {"type": "string", "format": "date-time"},
            "actor": {"type": "object", "properties": {"id": {"type": ["integer", "null"], "description": "Null for the command line."}, "label": {"type": "string"}}},
            "action": {"type": "string", "description": "Such as agent.created, agent.role_changed, agent.disabled, token.revoked, team.changed, channel.changed."},
            "target": {"type": "object", "properties": {"type": {"enum": ["agent", "team", "channel", "token"]}, "id": {"type": ["integer", "null"]}, "label": {"type": ["string", "null"]}}},
            "details": {"type": "object", "description": "What changed; secrets appear only as {\"changed\": true}."},
        },
    },
}

OPENAPI["paths"].update(_PEOPLE_PATHS)
OPENAPI["paths"]["/agents"]["post"] = {
    "summary": "Create an agent (admin); without a password, the response carries a one-time link to set one",
    "requestBody": _body({"type": "object", "required": ["email", "name"], "properties": {
        "email": {"type": "string"}, "name": {"type": "string"}, "role": {"enum": ["agent", "manager", "admin"], "default": "agent"},
        "password": {"type": "string", "minLength": 10, "maxLength": 200, "description": "Temporary: the agent must change it at the first sign-in."},
    }}),
    "responses": {
        "201": _json({"allOf": [_ref("Account"), {"type": "object", "properties": {"password_reset": {"type": ["object", "null"], "properties": {"reset_url": {"type": "string"}, "expires_at": {"type": "string", "format": "date-time"}}}}}]}, "The agent."),
        "400": _INVALID, "409": _json(_ref("Error"), "The email is taken."), **_ADMIN_ERRORS,
    },
}
OPENAPI["components"]["schemas"].update(_PEOPLE_SCHEMAS)
_ROUND_ROBIN = {"type": "boolean", "description": "Assign new conversations round robin among the members; off, they wait in the team's queue."}
OPENAPI["components"]["schemas"]["Team"]["properties"]["round_robin"] = _ROUND_ROBIN
OPENAPI["components"]["schemas"]["TeamInput"]["properties"]["round_robin"] = _ROUND_ROBIN

# ---- Proactive updates: the audit log (gateway.proactive_log) --------------------------------

OPENAPI["paths"]["/proactive/sends"] = {
    "get": {
        "summary": "The proactive update log, newest first (manager role)",
        "parameters": [
            _query("template_id", {"type": "integer"}, "Only this update template."),
            _query("trigger", {"type": "string", "enum": [
                "status_changed", "assigned", "no_agent_reply", "queue_wait", "first_response_at_risk",
                "periodic", "resolved",
            ]}, "Only this trigger."),
            _query("conversation_id", {"type": "integer"}, "Only this conversation."),
            _query("channel", {"type": "string", "enum": ["email", "whatsapp"]}, "Only this channel kind."),
            _query("result", {"type": "string", "enum": ["queued", "sent", "deferred", "skipped", "failed"]},
                   "Only this result."),
            _query("limit", {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}, "Rows per page."),
            _query("cursor", {"type": "string"}, "The next_cursor of the previous page."),
        ],
        "responses": {
            "200": _json(
                {
                    "type": "object",
                    "properties": {
                        "items": {"type": "array", "items": _ref("ProactiveSend")},
                        "next_cursor": {"type": ["string", "null"], "description": "Null on the last page."},
                    },
                },
                "One page of the log.",
            ),
            "400": _INVALID,
            **_ERRORS,
        },
    },
}

OPENAPI["components"]["schemas"]["ProactiveSend"] = {
    "type": "object",
    "description": "One occurrence of a proactive update for one conversation, and what became of it.",
    "properties": {
        "id": {"type": "integer"},
        "template": {"type": "object", "properties": {"id": {"type": "integer"}, "name": {"type": "string"}}},
        "conversation_id": {"type": "integer"},
        "trigger": {"type": "string"},
        "occurrence_key": {"type": "string", "description": "Names the occurrence, e.g. activity:42 or period:3."},
        "channel": {"type": "string", "enum": ["email", "whatsapp"]},
        "result": {"type": "string", "enum": ["queued", "sent", "deferred", "skipped", "failed"]},
        "reason_code": {"type": ["string", "null"], "description": "For example opted_out, daily_cap, quiet_hours."},
        "reason": {"type": ["string", "null"], "description": "The reason code and an explanation."},
        "scheduled_for": {"type": ["string", "null"], "format": "date-time", "description": "While deferred: when it goes."},
        "message_id": {"type": ["integer", "null"], "description": "The outbound message, once queued."},
        "delivery_status": {
            "type": ["string", "null"],
            "enum": [None, "queued", "sent", "delivered", "read", "undelivered", "failed"],
            "description": "The outbound message's delivery state, as its conversation's thread shows it; null without a message.",
        },
        "delivery_error": {"type": ["string", "null"], "description": "The provider's reason when the message failed or was not delivered."},
        "created_at": {"type": "string", "format": "date-time"},
        "updated_at": {"type": "string", "format": "date-time"},
    },
}


# ---- Backlog and trend reports (gateway.reports) ------------------------------------------------

_REPORT_RANGE = [
    _query("days", {"type": "integer", "minimum": 1, "maximum": 90, "default": 14},
           "Days counted back from today, today included. Not together with from."),
    _query("from", {"type": "string", "format": "date"}, "The first day, included."),
    _query("to", {"type": "string", "format": "date"}, "The last day, included; today or earlier (default today)."),
]
_REPORT_DESCRIPTION = (
    "Needs the manager or admin role. Days are those of the workspace's time zone (time_zone), "
    "at most 90; a range that is invalid, too long or ends after today is a 400 naming the parameter."
)

OPENAPI["paths"].update({
    "/reports/backlog": {
        "get": {
            "summary": "The backlog now: open, pending and snoozed conversations, broken down",
            "description": "Needs the manager or admin role.",
            "parameters": [
                _query("limit", {"type": "integer", "minimum": 1, "maximum": 100, "default": 10},
                       "How many of the longest-waiting conversations to list."),
            ],
            "responses": {"200": _json(_ref("Backlog"), "The backlog."), "400": _INVALID, **_ERRORS},
        },
    },
    "/reports/trend": {
        "get": {
            "summary": "Per day: conversations created and resolved, the backlog at the day's end, first response times",
            "description": _REPORT_DESCRIPTION,
            "parameters": _REPORT_RANGE,
            "responses": {"200": _json(_ref("Trend"), "The trend."), "400": _INVALID, **_ERRORS},
        },
    },
    "/reports/satisfaction": {
        "get": {
            "summary": "The customers' answers to the satisfaction question, in all and per agent",
            "description": _REPORT_DESCRIPTION,
            "parameters": _REPORT_RANGE,
            "responses": {"200": _json(_ref("Satisfaction"), "The answers."), "400": _INVALID, **_ERRORS},
        },
    },
    "/reports/trend.csv": {
        "get": {
            "summary": "The trend as CSV, one row per day with the JSON's field names as header",
            "description": _REPORT_DESCRIPTION,
            "parameters": _REPORT_RANGE,
            "responses": {
                "200": {"description": "CSV, as an attachment.", "content": {"text/csv": {"schema": {"type": "string"}}}},
                "400": _INVALID,
                **_ERRORS,
            },
        },
    },
})

_REPORT_COUNT = {
    "type": "object",
    "properties": {
        "key": {"type": ["string", "integer", "null"], "description": "The status, priority or age bucket; the channel or team id; null for no team."},
        "label": {"type": "string"},
        "count": {"type": "integer"},
    },
}
_REPORT_BREAKDOWN = {"type": "array", "items": _REPORT_COUNT}

OPENAPI["components"]["schemas"].update({
    "Backlog": {
        "type": "object",
        "properties": {
            "generated_at": {"type": "string", "format": "date-time"},
            "total": {"type": "integer", "description": "Open, pending and snoozed conversations."},
            "unassigned": {"type": "integer"},
            "by_status": _REPORT_BREAKDOWN,
            "by_priority": _REPORT_BREAKDOWN,
            "by_channel": _REPORT_BREAKDOWN,
            "by_team": {**_REPORT_BREAKDOWN, "description": "Empty when there are no teams; else every team and \"No team\"."},
            "by_age": {**_REPORT_BREAKDOWN, "description": "Keys under_1h, 1h_4h, 4h_24h, 1d_3d, over_3d: the wait since the customer's unanswered last message, else since creation."},
            "oldest": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "integer"},
                        "contact": {"type": "string"},
                        "subject": {"type": ["string", "null"]},
                        "status": {"type": "string"},
                        "priority": {"type": "string"},
                        "channel": {"type": "string"},
                        "team": {"type": ["string", "null"]},
                        "assignee": {"type": ["string", "null"]},
                        "waiting_since": {"type": "string", "format": "date-time"},
                        "waiting_seconds": {"type": "integer"},
                    },
                },
            },
        },
    },
    "Trend": {
        "type": "object",
        "properties": {
            "from": {"type": "string", "format": "date"},
            "to": {"type": "string", "format": "date"},
            "time_zone": {"type": "string", "description": "The IANA zone the days are in, such as Europe/Berlin."},
            "days": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "date": {"type": "string", "format": "date"},
                        "created": {"type": "integer"},
                        "resolved": {"type": "integer", "description": "Conversations resolved that day, each counted once."},
                        "open_at_end": {"type": "integer", "description": "Open, pending and snoozed conversations at the day's end (now, for today)."},
                        "first_responses": {"type": "integer"},
                        "median_first_response_seconds": {"type": ["integer", "null"]},
                        "p90_first_response_seconds": {"type": ["integer", "null"]},
                    },
                },
            },
        },
    },
    "Satisfaction": {
        "type": "object",
        "description": "Answers given on the range's days, in all, with by_agent the same figures per agent.",
        "properties": {
            "from": {"type": "string", "format": "date"},
            "to": {"type": "string", "format": "date"},
            "time_zone": {"type": "string", "description": "The IANA zone the days are in, such as Europe/Berlin."},
            **(_ANSWERS := {
                "answers": {"type": "integer", "description": "Ratings and yes/no answers together."},
                "ratings": {"type": "integer"},
                "average_rating": {"type": ["number", "null"], "description": "From 1 to 5, to two decimals; null without ratings."},
                "by_score": {"type": "object", "description": "The number of ratings of each score, keyed \"1\" to \"5\".",
                             "additionalProperties": {"type": "integer"}},
                "yes": {"type": "integer"},
                "no": {"type": "integer"},
                "yes_share": {"type": ["number", "null"], "description": "yes / (yes + no), from 0 to 1; null without yes/no answers."},
            }),
            "by_agent": {
                "type": "array",
                "description": "Most answers first. An answer counts for the agent who resolved the conversation.",
                "items": {
                    "type": "object",
                    "properties": {
                        "agent_id": {"type": ["integer", "null"], "description": "null for conversations resolved without an agent."},
                        "name": {"type": "string"},
                        **_ANSWERS,
                    },
                },
            },
        },
    },
})


# The minimum role each operation needs: "agent" is any signed-in agent. The routes enforce it
# (``gateway.auth.require_role``); the access tests check every operation against this table,
# which every documented operation must be in.
ROUTE_ROLES: dict[str, dict[str, str]] = {
    "/me": {"get": "agent"},
    "/conversations": {"get": "agent"},
    "/conversations/counts": {"get": "agent"},
    "/conversations/bulk": {"post": "agent"},
    "/conversations/{id}": {"get": "agent", "patch": "agent"},
    "/conversations/{id}/merge": {"post": "agent"},
    "/conversations/{id}/messages": {"get": "agent", "post": "agent"},
    "/conversations/{id}/read": {"post": "agent"},
    "/messages/{message_id}/cancel": {"post": "agent"},
    "/messages/{message_id}/email": {"post": "agent"},
    "/channels": {"get": "agent"},
    "/channels/{id}": {"patch": "admin"},
    "/channels/{channel_id}/templates": {"get": "agent"},
    "/channels/{channel_id}/default-team": {"put": "manager"},
    "/attachments/{id}": {"get": "agent"},
    "/teams": {"get": "agent", "post": "manager"},
    "/teams/{team_id}": {"patch": "manager"},
    "/labels": {"get": "agent", "post": "manager"},
    "/agents": {"get": "agent", "post": "admin"},
    "/agents/{agent_id}": {"patch": "manager"},
    "/agents/accounts": {"get": "admin"},
    "/agents/{agent_id}/role": {"put": "admin"},
    "/agents/{agent_id}/disable": {"post": "admin"},
    "/agents/{agent_id}/enable": {"post": "admin"},
    "/agents/{agent_id}/password-reset": {"post": "admin"},
    "/me/password": {"post": "agent"},
    "/me/tokens": {"get": "agent", "post": "agent"},
    "/me/tokens/{token_id}": {"delete": "agent"},
    "/me/sessions": {"get": "agent"},
    "/me/sessions/{session_id}": {"delete": "agent"},
    "/audit": {"get": "admin"},
    "/payloads": {"get": "admin"},
    "/payloads/{id}/reprocess": {"post": "admin"},
    "/openapi.json": {"get": "agent"},
    "/contacts": {"get": "agent"},
    "/contacts/{id}": {"get": "agent", "patch": "agent"},
    "/contacts/{id}/conversations": {"get": "agent"},
    "/contacts/{id}/merge": {"post": "agent"},
    "/conversations/{id}/estimate": {"get": "agent"},
    "/update-templates": {"get": "manager", "post": "manager"},
    "/update-templates/catalogue": {"get": "manager"},
    "/update-templates/preview": {"post": "manager"},
    "/update-templates/validate": {"post": "manager"},
    "/update-templates/{template_id}": {"get": "manager", "patch": "manager", "delete": "manager"},
    "/update-templates/{template_id}/enable": {"post": "manager"},
    "/update-templates/{template_id}/disable": {"post": "manager"},
    "/update-templates/{template_id}/preview": {"post": "manager"},
    "/proactive/sends": {"get": "manager"},
    "/reports/backlog": {"get": "manager"},
    "/reports/trend": {"get": "manager"},
    "/reports/trend.csv": {"get": "manager"},
    "/reports/satisfaction": {"get": "manager"},
    # Shared canned responses need the manager role, which the domain checks per response.
    "/conversations/{id}/notes": {"get": "agent", "post": "agent"},
    "/mentions": {"get": "agent"},
    "/mentions/read": {"post": "agent"},
    "/canned-responses": {"get": "agent", "post": "agent"},
    "/canned-responses/{response_id}": {"patch": "agent", "delete": "agent"},
}

for _path, _operations in ROUTE_ROLES.items():
    for _method, _role in _operations.items():
        if _method in OPENAPI["paths"].get(_path, {}):
            OPENAPI["paths"][_path][_method]["x-required-role"] = _role
