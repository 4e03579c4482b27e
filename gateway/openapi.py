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
                ],
                "responses": {"200": _json(_ref("ConversationPage"), "One page."), "400": _json(_ref("Error"), "Invalid limit or cursor."), **_ERRORS},
            }
        },
        "/conversations/{id}": {
            "get": {
                "summary": "One conversation with its messages, oldest first",
                "parameters": [_ID],
                "responses": {"200": _json(_ref("ConversationWithMessages"), "The conversation."), "404": _json(_ref("Error"), "Not found."), **_ERRORS},
            }
        },
        "/conversations/{id}/messages": {
            "post": {
                "summary": "Reply on the conversation's channel (queued in the outbox)",
                "parameters": [_ID],
                "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object", "required": ["text"], "properties": {"text": {"type": "string"}}}}}},
                "responses": {"201": _json(_ref("Message"), "The queued reply."), "400": _json(_ref("Error"), "Empty or too long."), "404": _json(_ref("Error"), "Not found."), **_ERRORS},
            }
        },
        "/conversations/{id}/read": {
            "post": {"summary": "Mark the conversation read", "parameters": [_ID], "responses": {"204": {"description": "Done."}, **_ERRORS}}
        },
        "/attachments/{id}": {
            "get": {"summary": "Download an attachment", "parameters": [_ID], "responses": {"200": {"description": "The file, as a download."}, "404": _json(_ref("Error"), "Not found."), **_ERRORS}}
        },
        "/channels": {"get": {"summary": "Channels and their health", "responses": {"200": {"description": "The channels."}, **_ERRORS}}},
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
            "Agent": {"type": "object", "properties": {"id": {"type": "integer"}, "email": {"type": "string"}, "name": {"type": "string"}, "role": {"enum": ["agent", "manager", "admin"]}}},
            "Conversation": {
                "type": "object",
                "properties": {
                    "id": {"type": "integer"},
                    "channel": {"type": "object", "properties": {"id": {"type": "integer"}, "kind": {"enum": ["email", "whatsapp"]}, "name": {"type": "string"}}},
                    "contact": {"type": "object", "properties": {"id": {"type": "integer"}, "name": {"type": ["string", "null"]}, "address": {"type": "string"}, "failing": {"type": ["object", "null"], "description": "Set while mail to the address bounces: since, reason."}}},
                    "subject": {"type": ["string", "null"]},
                    "snippet": {"type": "string"},
                    "status": {"enum": ["open", "pending", "resolved"]},
                    "unread_count": {"type": "integer"},
                    "last_message_at": {"type": "string", "format": "date-time"},
                    "created_at": {"type": "string", "format": "date-time"},
                },
            },
            "ConversationPage": {"type": "object", "properties": {"items": {"type": "array", "items": _ref("Conversation")}, "next_cursor": {"type": ["string", "null"]}, "last_event_id": {"type": "integer", "description": "The newest event id when the page was read; replay events after it."}}},
            "ConversationWithMessages": {"allOf": [_ref("Conversation"), {"type": "object", "properties": {"messages": {"type": "array", "items": _ref("Message")}}}]},
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
                    "attachments": {"type": "array", "items": {"type": "object"}},
                },
            },
        },
    },
}
