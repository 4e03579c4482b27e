"""WhatsApp through Meta's WhatsApp Cloud API, beside Twilio: webhooks in, Graph API out.

Both providers translate to the same neutral types, so the inbox cannot tell them apart.
"""

from channels.whatsapp.meta.graph import (
    DEFAULT_API_BASE_URL,
    DEFAULT_API_VERSION,
    MetaSettings,
    MetaTemplate,
    fetch_media,
    send_template,
    send_text,
)
from channels.whatsapp.meta.webhooks import (
    RAW_FORMAT,
    SIGNATURE_HEADER,
    ParsedMessage,
    ParsedStatus,
    RejectedMessage,
    WebhookEvents,
    media_id,
    parse_stored_message,
    parse_webhook,
    verification_challenge,
    verify_signature,
)

__all__ = [
    "DEFAULT_API_BASE_URL",
    "DEFAULT_API_VERSION",
    "RAW_FORMAT",
    "SIGNATURE_HEADER",
    "MetaSettings",
    "MetaTemplate",
    "ParsedMessage",
    "ParsedStatus",
    "RejectedMessage",
    "WebhookEvents",
    "fetch_media",
    "media_id",
    "parse_stored_message",
    "parse_webhook",
    "send_template",
    "send_text",
    "verification_challenge",
    "verify_signature",
]
