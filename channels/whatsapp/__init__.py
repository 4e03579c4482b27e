"""The WhatsApp channel, carried by Twilio's Messages API and webhooks."""

from channels.whatsapp.phone import normalize_phone
from channels.whatsapp.twilio import (
    RAW_FORMAT,
    STATUS_RAW_FORMAT,
    TwilioSettings,
    is_status_callback,
    parse_inbound,
    parse_status,
    send_whatsapp,
    twilio_status_to_state,
    validate_signature,
)

__all__ = [
    "RAW_FORMAT",
    "STATUS_RAW_FORMAT",
    "TwilioSettings",
    "is_status_callback",
    "normalize_phone",
    "parse_inbound",
    "parse_status",
    "send_whatsapp",
    "twilio_status_to_state",
    "validate_signature",
]
