"""The neutral message model that every channel adapter translates to and from.

Nothing here depends on Flask, the database or a provider's wire format. The inbox
works only with these types, so it cannot tell an email from a WhatsApp message except
by ``channel_kind``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class ChannelKind(str, enum.Enum):
    EMAIL = "email"
    WHATSAPP = "whatsapp"


class AddressKind(str, enum.Enum):
    EMAIL = "email"
    PHONE = "phone"


@dataclass(frozen=True)
class Address:
    """A customer or mailbox address: a lower-cased email address or an E.164 phone number."""

    kind: AddressKind
    value: str
    display_name: str | None = None


@dataclass
class Attachment:
    """A file carried by a message. ``content_id`` is set for inline parts referenced by ``cid:``."""

    filename: str
    content_type: str
    data: bytes
    content_id: str | None = None
    inline: bool = False

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass(frozen=True)
class MediaReference:
    """Media that the provider hosts and that must be downloaded later (WhatsApp)."""

    url: str
    content_type: str


@dataclass
class InboundMessage:
    """One message received from a customer, parsed from its raw payload.

    ``provider_message_id`` is the provider's unique id (Twilio's MessageSid, the email
    Message-ID, or a content hash when the mail has none); the inbox uses it to ignore
    replays. ``raw`` is the payload exactly as received, kept for re-processing.
    """

    channel_kind: ChannelKind
    provider_message_id: str
    sender: Address
    raw: bytes
    raw_format: str
    recipients: list[Address] = field(default_factory=list)
    cc: list[Address] = field(default_factory=list)
    subject: str | None = None
    text: str = ""
    html: str | None = None
    sent_at: datetime | None = None
    in_reply_to: str | None = None
    references: list[str] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    media: list[MediaReference] = field(default_factory=list)
    # None for mail a person wrote, else "auto_reply" or "bounce". Nothing answers these.
    automatic: str | None = None
    bounce: Bounce | None = None
    # Outlook's Thread-Index header as received (base64), which identifies the thread.
    thread_index: str | None = None
    # Structured content that ``text`` describes in words, keyed by "type": "location",
    # "contacts", "button", "list" or "reaction" (see channels.whatsapp.webhooks). A
    # WhatsApp reply or reaction names the message it refers to in ``in_reply_to``.
    content: dict[str, Any] | None = None
    # An email's reply without its quoted history and signature, when part of ``text``
    # folds away; None when the whole text shows. The parser finds it, so a large import
    # does that work in its parser process.
    visible_text: str | None = None


@dataclass(frozen=True)
class Bounce:
    """The details a bounce reports about the mail that could not be delivered.

    ``original_message_id`` is the Message-ID (without brackets) of the returned mail, and
    ``status`` its RFC 3463 code such as ``5.1.1``. Both are None when the bounce omits them.
    """

    failed_recipients: list[str]
    original_message_id: str | None
    status: str | None
    diagnostic: str | None


@dataclass
class OutboundMessage:
    """A message to send to a customer.

    For email, ``message_id`` is the Message-ID we assign (so a reply to it threads back),
    and ``in_reply_to``/``references`` point at the customer's messages. For WhatsApp,
    ``content_sid`` names an approved template that is sent with ``content_variables`` in
    place of ``text``. On Meta's Cloud API a template is named by ``template_name`` and
    ``template_language`` instead.
    """

    to: Address
    text: str
    sender: Address | None = None
    subject: str | None = None
    html: str | None = None
    message_id: str | None = None
    in_reply_to: str | None = None
    references: list[str] = field(default_factory=list)
    reply_to: str | None = None
    attachments: list[Attachment] = field(default_factory=list)
    status_callback_url: str | None = None
    content_sid: str | None = None
    content_variables: dict[str, str] | None = None
    template_name: str | None = None
    template_language: str | None = None


@dataclass(frozen=True)
class SendResult:
    """The provider's acceptance of a send: its id for the message and the initial delivery status."""

    provider_message_id: str
    status: DeliveryState


class DeliveryState(str, enum.Enum):
    QUEUED = "queued"
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    UNDELIVERED = "undelivered"
    FAILED = "failed"


@dataclass(frozen=True)
class DeliveryStatus:
    """A delivery-status report from the provider about a message we sent."""

    provider_message_id: str
    state: DeliveryState
    error_code: str | None = None
    error_message: str | None = None
