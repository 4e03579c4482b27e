"""Provider adapters: translate between each provider's wire format and the neutral model."""

from channels.errors import (
    ChannelError,
    ParseError,
    PermanentSendError,
    SendError,
    SignatureError,
    TransientSendError,
)
from channels.types import (
    Address,
    AddressKind,
    Attachment,
    ChannelKind,
    DeliveryState,
    DeliveryStatus,
    InboundMessage,
    MediaReference,
    OutboundMessage,
    SendResult,
)

__all__ = [
    "Address",
    "AddressKind",
    "Attachment",
    "ChannelError",
    "ChannelKind",
    "DeliveryState",
    "DeliveryStatus",
    "InboundMessage",
    "MediaReference",
    "OutboundMessage",
    "ParseError",
    "PermanentSendError",
    "SendError",
    "SendResult",
    "SignatureError",
    "TransientSendError",
]
