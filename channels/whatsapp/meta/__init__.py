"""WhatsApp through Meta's WhatsApp Cloud API, beside Twilio: webhooks in, Graph API out.

Both providers translate to the same neutral types, so the inbox cannot tell them apart.
"""

from channels.whatsapp.meta.graph import (
    DEFAULT_API_BASE_URL,
    DEFAULT_API_VERSION,
    MessageTemplate,
    MessageTemplatesError,
    MetaSettings,
    MetaTemplate,
    fetch_media,
    list_message_templates,
    send_message,
    send_template,
    send_text,
    template_parameters,
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
    signature,
    verification_challenge,
    verify_signature,
)

__all__ = [
    "DEFAULT_API_BASE_URL",
    "DEFAULT_API_VERSION",
    "RAW_FORMAT",
    "SIGNATURE_HEADER",
    "MessageTemplate",
    "MessageTemplatesError",
    "MetaSettings",
    "MetaTemplate",
    "ParsedMessage",
    "ParsedStatus",
    "RejectedMessage",
    "WebhookEvents",
    "fetch_media",
    "list_message_templates",
    "media_id",
    "parse_stored_message",
    "parse_webhook",
    "send_message",
    "send_template",
    "send_text",
    "signature",
    "template_parameters",
    "verification_challenge",
    "verify_signature",
]
