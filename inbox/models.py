"""The database model: typed SQLAlchemy 2.x mappings.

Every datetime column stores timezone-aware UTC. SQLite drops the offset, so ``UTCDateTime``
puts it back on load; PostgreSQL keeps it in ``timestamptz``.
"""

from __future__ import annotations

import enum
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    text,
    TypeDecorator,
    Unicode,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Explicit constraint names, so Alembic migrations are the same on SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# BigInteger primary keys autoincrement on PostgreSQL; SQLite only does that for INTEGER.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator[datetime]):
    """A datetime that is stored as UTC and always loaded timezone-aware."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass a timezone-aware UTC value")
        return value.astimezone(timezone.utc)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Role(str, enum.Enum):
    AGENT = "agent"
    MANAGER = "manager"
    ADMIN = "admin"


class ConversationStatus(str, enum.Enum):
    """A conversation's status. ``inbox.workflow`` contains the transitions between them."""

    OPEN = "open"
    # Waiting on the customer.
    PENDING = "pending"
    # Hidden until ``snoozed_until`` or the customer's next message, then open again.
    SNOOZED = "snoozed"
    RESOLVED = "resolved"
    # Merged into another conversation (``merged_into_id``); final.
    CLOSED = "closed"


class Priority(str, enum.Enum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"


class Direction(str, enum.Enum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"


class OutboxStatus(str, enum.Enum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"
    # A WhatsApp reply outside the 24-hour window, waiting for the customer's next message.
    HELD = "held"
    # A held reply that an agent withdrew. It is never sent.
    CANCELLED = "cancelled"


class HoldReason(str, enum.Enum):
    """The reason a WhatsApp reply is held instead of sent."""

    # The customer's last message was more than 24 hours ago when the agent replied.
    OUTSIDE_WINDOW = "outside_window"
    # Twilio rejected the send with error 63016 because the window had closed.
    WINDOW_ERROR = "window_error"


class PayloadStatus(str, enum.Enum):
    # Acknowledged to the provider and waiting for the webhook worker to ingest it.
    PENDING = "pending"
    PROCESSED = "processed"
    FAILED = "failed"


class Agent(Base):
    __tablename__ = "agents"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(300))
    role: Mapped[str] = mapped_column(String(20), default=Role.AGENT.value)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The maximum of open conversations that automatic assignment gives this agent; None for no limit.
    max_open_conversations: Mapped[int | None] = mapped_column(Integer)
    # Set by an admin's password reset: the next browser sign-in must choose a new password.
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=False)
    # The latest request by one of the agent's sign-ins or API tokens, to the minute.
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AgentSession(Base):
    """A browser sign-in. The cookie carries the token; only its SHA-256 is stored, and a
    revoked or missing row ends the session however long the cookie would still be valid."""

    __tablename__ = "agent_sessions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The latest request of this sign-in, to the minute; the idle timeout counts from it.
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The browser and address that signed in, so the agent can tell their sign-ins apart.
    user_agent: Mapped[str | None] = mapped_column(String(300))
    ip_address: Mapped[str | None] = mapped_column(String(45))

    agent: Mapped[Agent] = relationship()


class ApiToken(Base):
    """A personal API token. Only the SHA-256 of the token is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    agent: Mapped[Agent] = relationship()


class Channel(Base):
    """A configured inbound/outbound channel: one mailbox or one WhatsApp sender number.

    ``settings`` contains the provider settings (hosts, usernames, credentials) as JSON.
    ``address`` is our side's address: the mailbox's email address or the E.164 number.
    """

    __tablename__ = "channels"
    __table_args__ = (UniqueConstraint("kind", "address"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    name: Mapped[str] = mapped_column(String(200))
    address: Mapped[str] = mapped_column(String(320))
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_sync_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The latest failed copy of a sent reply to the mailbox's Sent folder. The next success clears it.
    sent_copy_error: Mapped[str | None] = mapped_column(Text)
    sent_copy_error_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # New conversations on this channel go to this team and are assigned within it.
    default_team_id: Mapped[int | None] = mapped_column(ForeignKey("teams.id", ondelete="SET NULL"))
    # No send on this channel before this time: the pacing interval after the last send,
    # or the wait a provider asked for with HTTP 429 (see inbox.outbox).
    send_not_before: Mapped[datetime | None] = mapped_column(UTCDateTime)

    default_team: Mapped[Team | None] = relationship()


team_members = Table(
    "team_members",
    Base.metadata,
    Column("team_id", ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True),
    Column("agent_id", ForeignKey("agents.id", ondelete="CASCADE"), primary_key=True, index=True),
)


class Team(Base):
    """A group of agents that shares a queue of conversations.

    ``name_key`` is the case-folded name, unique, so names differ in more than case.
    ``last_assigned_agent_id`` is where automatic assignment's round robin continues.
    """

    __tablename__ = "teams"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(80))
    name_key: Mapped[str] = mapped_column(String(80), unique=True)
    last_assigned_agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Off: new conversations wait unassigned in the team's queue instead of going round robin.
    round_robin: Mapped[bool] = mapped_column(Boolean, default=True)

    members: Mapped[list[Agent]] = relationship(secondary=team_members, order_by="Agent.id")


conversation_labels = Table(
    "conversation_labels",
    Base.metadata,
    Column("conversation_id", ForeignKey("conversations.id", ondelete="CASCADE"), primary_key=True),
    Column("label_id", ForeignKey("labels.id", ondelete="CASCADE"), primary_key=True),
    # Copies of the conversation's columns, which database triggers (migration 0021) keep equal
    # on every write, so a labelled view reads one page from the indexes below.
    Column("status", String(20)),
    Column("priority", String(10)),
    Column("last_message_at", UTCDateTime),
    Index("ix_conversation_labels_label_activity", "label_id", "last_message_at", "conversation_id"),
    Index("ix_conversation_labels_label_status_activity", "label_id", "status", "last_message_at", "conversation_id"),
    Index(
        "ix_conversation_labels_label_status_priority_activity",
        "label_id", "status", "priority", "last_message_at", "conversation_id",
    ),
)


class Label(Base):
    """A label agents put on conversations. ``name_key`` is the case-folded name, unique."""

    __tablename__ = "labels"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
    name_key: Mapped[str] = mapped_column(String(50), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Contact(Base):
    """A customer. ``name`` comes from the channel (WhatsApp profile name, email display
    name) until an agent sets one, which ``name_set_by_agent`` records so that the
    channel's name never overwrites it."""

    __tablename__ = "contacts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str | None] = mapped_column(String(200))
    name_set_by_agent: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Set when the contact wrote an opt-out keyword such as STOP: no proactive messages go to
    # them until they write an opt-in keyword such as START. Replies to them still go out.
    opted_out_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    opted_out_keyword: Mapped[str | None] = mapped_column(String(50))
    # What agents write down about the customer, shown beside every conversation of theirs.
    notes: Mapped[str | None] = mapped_column(Text)
    # Set once this contact was merged into another (``inbox.contact_merge``). It then owns no
    # identity or conversation and stays only so that the merge history can point to it.
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id"), index=True)
    # The contact's IANA time zone ("Europe/Berlin"), for quiet hours; None to derive it from
    # the phone number's country, else the workspace's zone (inbox.proactive.quiet_hours).
    time_zone: Mapped[str | None] = mapped_column(String(64))

    identities: Mapped[list[ContactIdentity]] = relationship(
        back_populates="contact", order_by="ContactIdentity.id"
    )


class ContactIdentity(Base):
    """One way to reach a contact: a lower-cased email address or an E.164 phone number."""

    __tablename__ = "contact_identities"
    __table_args__ = (UniqueConstraint("kind", "value"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    value: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Set when mail to this address bounced, so nothing is sent to it automatically.
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    failure_reason: Mapped[str | None] = mapped_column(Text)

    contact: Mapped[Contact] = relationship(back_populates="identities")


class Conversation(Base):
    __tablename__ = "conversations"
    __table_args__ = (
        # The inbox list: newest activity first, keyset-paginated on (last_message_at, id).
        Index("ix_conversations_activity", "last_message_at", "id"),
        Index("ix_conversations_contact_channel", "contact_id", "channel_id", "status"),
        # The views filter on these, and the view counts read only this index (inbox.views).
        Index("ix_conversations_status_assignee_team", "status", "assignee_id", "team_id"),
        Index("ix_conversations_team_status", "team_id", "status"),
        # The snooze wake job looks for snoozed conversations that are due.
        Index("ix_conversations_status_snoozed_until", "status", "snoozed_until"),
        # Filtered views sort by activity within one status, or one status and priority.
        Index("ix_conversations_status_activity", "status", "last_message_at", "id"),
        Index("ix_conversations_status_priority_activity", "status", "priority", "last_message_at", "id"),
        # The trend report counts conversations created per day (inbox.reports).
        Index("ix_conversations_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id"))
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id"))
    subject: Mapped[str | None] = mapped_column(String(998))
    status: Mapped[str] = mapped_column(String(20), default=ConversationStatus.OPEN.value)
    snippet: Mapped[str] = mapped_column(String(300), default="")
    unread_count: Mapped[int] = mapped_column(Integer, default=0)
    last_message_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_inbound_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    # The resolved conversation that this one follows up, when a reply came after its reopen window.
    previous_conversation_id: Mapped[int | None] = mapped_column(ForeignKey("conversations.id"), index=True)
    # A random secret in our Reply-To address (support+c<id>.<token>@domain) that threads replies.
    reply_token: Mapped[str | None] = mapped_column(String(32))
    priority: Mapped[str] = mapped_column(String(10), default=Priority.NORMAL.value)
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"))
    team_id: Mapped[int | None] = mapped_column(ForeignKey("teams.id", ondelete="SET NULL"))
    # Set only while the status is "snoozed": when the snooze wake job opens it again.
    snoozed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Set on a closed conversation: the one its messages were merged into.
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("conversations.id"))

    channel: Mapped[Channel] = relationship()
    contact: Mapped[Contact] = relationship()
    messages: Mapped[list[Message]] = relationship(
        back_populates="conversation", order_by="Message.id"
    )
    assignee: Mapped[Agent | None] = relationship(foreign_keys=[assignee_id])
    team: Mapped[Team | None] = relationship()
    labels: Mapped[list[Label]] = relationship(secondary=conversation_labels, order_by="Label.name_key")


class ConversationActivity(Base):
    """One change to a conversation, shown in its thread: who changed what, and when.

    ``agent_id`` is None for changes the system made (a snooze ending, a customer's message
    reopening, automatic assignment). ``details`` contains the old and new values.
    """

    __tablename__ = "conversation_activities"
    __table_args__ = (Index("ix_conversation_activities_conversation", "conversation_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"))
    action: Mapped[str] = mapped_column(String(30))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    agent: Mapped[Agent | None] = relationship()


class Message(Base):
    """A message in a conversation, inbound or outbound.

    ``provider_message_id`` is Twilio's MessageSid or the email Message-ID (a content hash
    for mail without one); it is unique per channel, which makes replays no-ops.
    ``rfc_message_id`` is the email Message-ID, stored for inbound and outbound mail alike
    so that In-Reply-To and References can be matched against every id we stored or sent.
    """

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("channel_id", "provider_message_id"),
        Index("ix_messages_conversation", "conversation_id", "id"),
        # Deleting an applied status payload checks this foreign key (migration 0025).
        Index("ix_messages_raw_payload_id", "raw_payload_id"),
        # The trend report finds the agent replies of a range of days (inbox.reports).
        Index("ix_messages_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id"))
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id"))
    direction: Mapped[str] = mapped_column(String(10))
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id"))
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"))
    provider_message_id: Mapped[str | None] = mapped_column(String(998))
    rfc_message_id: Mapped[str | None] = mapped_column(String(998), index=True)
    in_reply_to: Mapped[str | None] = mapped_column(String(998))
    references: Mapped[list[str]] = mapped_column(JSON, default=list)
    subject: Mapped[str | None] = mapped_column(String(998))
    text: Mapped[str] = mapped_column(Text, default="")
    html: Mapped[str | None] = mapped_column(Text)
    sender_address: Mapped[str | None] = mapped_column(String(320))
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivery_status: Mapped[str | None] = mapped_column(String(20))
    delivery_error: Mapped[str | None] = mapped_column(Text)
    raw_payload_id: Mapped[int | None] = mapped_column(ForeignKey("raw_payloads.id"))
    # The threading rule that placed an inbound message (inbox.threader.ThreadReason).
    thread_reason: Mapped[str | None] = mapped_column(String(30))
    # Base64 of the first 22 bytes of Outlook's Thread-Index, the same for a whole thread.
    thread_index_root: Mapped[str | None] = mapped_column(String(64), index=True)
    # "auto_reply" or "bounce" for inbound mail that a machine sent, else None.
    automatic: Mapped[str | None] = mapped_column(String(20))
    # An approved WhatsApp template (Twilio's Content SID, HX...) and its variables. ``text``
    # is then the template rendered with those variables, as the customer reads it.
    content_sid: Mapped[str | None] = mapped_column(String(34))
    content_variables: Mapped[dict[str, str] | None] = mapped_column(JSON)
    # A Meta Cloud API message template, named by its name and language code (en_US), whose
    # body parameters are ``content_variables``; None unless the reply is such a template.
    template_name: Mapped[str | None] = mapped_column(String(512))
    template_language: Mapped[str | None] = mapped_column(String(20))
    # The email that resent this failed WhatsApp reply. The unique key allows one resend.
    email_fallback_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id"), unique=True)
    # Structured content beside the text (a location, a button or list reply, a reaction,
    # a shared contact), as channels.types.InboundMessage.content describes; else None.
    content: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # The earlier message that this one answers or reacts to (WhatsApp's quoted reply).
    reply_to_message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id"), index=True)

    conversation: Mapped[Conversation] = relationship(back_populates="messages")
    channel: Mapped[Channel] = relationship()
    contact: Mapped[Contact | None] = relationship()
    agent: Mapped[Agent | None] = relationship()
    raw_payload: Mapped[RawPayload | None] = relationship()
    outbox_item: Mapped[OutboxItem | None] = relationship(back_populates="message", uselist=False)
    attachments: Mapped[list[Attachment]] = relationship(
        back_populates="message", order_by="Attachment.id"
    )
    email_fallback: Mapped[Message | None] = relationship(remote_side=[id], foreign_keys=[email_fallback_id])
    reply_to: Mapped[Message | None] = relationship(remote_side=[id], foreign_keys=[reply_to_message_id])
    parts: Mapped[list[MessagePart]] = relationship(
        back_populates="message", order_by="MessagePart.position"
    )
    # The satisfaction answer that this inbound message gave, if it was one. Written through
    # SatisfactionAnswer.message_id only, so this side never changes the answer's row.
    satisfaction_answer: Mapped[SatisfactionAnswer | None] = relationship(viewonly=True)


class MessagePart(Base):
    """One provider message of an outbound message that went out in several.

    A WhatsApp reply longer than Twilio's 1,600-character limit, or with more than one
    attachment, is sent as several Twilio messages, in ``position`` order, each with its
    own SID and delivery status. The parent ``Message`` shows the least advanced status
    of its parts, or the failure of one. Rows exist only for messages of two or more parts,
    and a part gets its row when the provider accepts it.
    """

    __tablename__ = "message_parts"
    __table_args__ = (
        UniqueConstraint("message_id", "position"),
        UniqueConstraint("channel_id", "provider_message_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"))
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id"))
    # 0 for the first part.
    position: Mapped[int] = mapped_column(Integer)
    provider_message_id: Mapped[str] = mapped_column(String(998))
    delivery_status: Mapped[str | None] = mapped_column(String(20))
    delivery_error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    message: Mapped[Message] = relationship(back_populates="parts")


class Attachment(Base):
    __tablename__ = "attachments"
    __table_args__ = (Index("ix_attachments_fetch_due", "fetch_status", "next_fetch_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), index=True)
    filename: Mapped[str] = mapped_column(String(500))
    content_type: Mapped[str] = mapped_column(String(200))
    size: Mapped[int] = mapped_column(BigInteger)
    content_id: Mapped[str | None] = mapped_column(String(500))
    inline: Mapped[bool] = mapped_column(Boolean, default=False)
    # The file's key in the attachment store (inbox.storage); None when it was not stored.
    storage_key: Mapped[str | None] = mapped_column(String(64), index=True)
    # Why the file was not stored, for example that it exceeded the channel's size limit.
    omitted_reason: Mapped[str | None] = mapped_column(String(500))
    # Bytes of attachments stored before the attachment store existed.
    data: Mapped[bytes | None] = mapped_column(LargeBinary)
    # Media the provider hosts (WhatsApp) is downloaded after the message is stored:
    # fetch_status is "pending" until then, "stored" or "failed"; None for files that came
    # inside the message (email).
    source_url: Mapped[str | None] = mapped_column(String(2000))
    fetch_status: Mapped[str | None] = mapped_column(String(20))
    fetch_attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_fetch_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    message: Mapped[Message] = relationship(back_populates="attachments")


class RawPayload(Base):
    """An inbound payload exactly as received, kept for audit and re-processing.

    Unique per channel by the SHA-256 of its bytes, so a replayed webhook or re-fetched
    mail is stored once. A payload that failed to parse keeps the error for an admin. A
    Twilio webhook is stored ``pending`` before it is answered, and the webhook worker
    ingests it later (``inbox.webhook_queue``); a partial index finds those rows.
    """

    __tablename__ = "raw_payloads"
    __table_args__ = (
        UniqueConstraint("channel_id", "digest"),
        Index(
            "ix_raw_payloads_pending",
            "id",
            sqlite_where=text("status = 'pending'"),
            postgresql_where=text("status = 'pending'"),
        ),
        # Applied Twilio status callbacks, which the webhook worker deletes after a day.
        Index(
            "ix_raw_payloads_applied_statuses",
            "received_at",
            sqlite_where=text("status = 'processed' AND format = 'twilio-status-form'"),
            postgresql_where=text("status = 'processed' AND format = 'twilio-status-form'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id"))
    format: Mapped[str] = mapped_column(String(30))
    digest: Mapped[str] = mapped_column(String(64))
    body: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(20), default=PayloadStatus.PROCESSED.value)
    error: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class MailboxCheckpoint(Base):
    """How far a mailbox folder has been imported: (UIDVALIDITY, last committed UID).

    The row also carries the folder's health: when the reader last read it through, and
    its latest error until it reads again. A folder that failed before its first read has
    a row with no UIDVALIDITY.
    """

    __tablename__ = "mailbox_checkpoints"
    __table_args__ = (UniqueConstraint("channel_id", "folder"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id", ondelete="CASCADE"))
    folder: Mapped[str] = mapped_column(String(500))
    uidvalidity: Mapped[int | None] = mapped_column(BigInteger)
    last_uid: Mapped[int] = mapped_column(BigInteger, default=0)
    last_sync_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class OutboxItem(Base):
    """A queued send of one outbound message. Committed together with the message.

    While a dispatcher sends, ``locked_until`` (its lease), ``in_flight_since`` and
    ``claim_token`` are set, in the transaction that claimed the item. An item whose lease
    expired while ``in_flight_since`` is still set may have reached the customer. A Twilio
    item is then looked up at Twilio before any new attempt; an item of a sender without
    such a lookup is marked failed instead of being sent again (see ``inbox.outbox``).
    """

    __tablename__ = "outbox_items"
    __table_args__ = (Index("ix_outbox_items_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id"), unique=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id"))
    status: Mapped[str] = mapped_column(String(20), default=OutboxStatus.PENDING.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)
    # A dispatcher leases the row while it sends; an expired lease means that dispatcher died.
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When the current send attempt started. Cleared once its outcome is recorded.
    in_flight_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # A random value per claim. Only the dispatcher with this token may record the outcome.
    claim_token: Mapped[str | None] = mapped_column(String(64))
    # When the earliest failed attempt began whose request may have reached the provider
    # (a timeout, a dropped connection). Set until the current part is recorded as sent.
    unconfirmed_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Set while the item is held (a ``HoldReason``), and when that hold began.
    hold_reason: Mapped[str | None] = mapped_column(String(30))
    held_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    message: Mapped[Message] = relationship(back_populates="outbox_item")
    channel: Mapped[Channel] = relationship()


class Event(Base):
    """A change that agents' browsers must see, published after its transaction commits.

    The autoincrement id is the event id clients use to ask for what they missed.
    """

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    type: Mapped[str] = mapped_column(String(50))
    conversation_id: Mapped[int | None] = mapped_column(BigInteger)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class EarlyDeliveryReport(Base):
    """A provider's delivery report that arrived before the send it describes was recorded.

    A provider can call back before the dispatcher has stored the provider message id.
    The report waits here until ``mark_sent`` stores that id, which applies and deletes it.
    Unique per (channel, provider message id, state), so a repeated callback is kept once.
    Reports about sends of other tools on the same number never match, so they are deleted
    after ``EARLY_REPORT_LIFETIME`` (see ``inbox.delivery``).
    """

    __tablename__ = "early_delivery_reports"
    __table_args__ = (UniqueConstraint("channel_id", "provider_message_id", "state"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id", ondelete="CASCADE"))
    provider_message_id: Mapped[str] = mapped_column(String(998))
    state: Mapped[str] = mapped_column(String(20))
    error_code: Mapped[str | None] = mapped_column(Text)
    error_message: Mapped[str | None] = mapped_column(Text)
    # Indexed so that reports no send ever claimed can be deleted once they are old.
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class ContactMerge(Base):
    """One contact merged into another: who did it, when, and what the merged one was.

    ``merged_name`` and ``merged_identities`` (a list of ``{"kind", "value"}``) keep the
    merged contact as it was, because its identities now belong to the kept one. ``details``
    lists what moved: ``conversation_ids``, ``message_count``, ``notes_moved`` and the
    ``opted_out`` state it had. The unique key on ``merged_contact_id`` lets a contact be
    merged away only once.
    """

    __tablename__ = "contact_merges"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kept_contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id"), index=True)
    merged_contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id"), unique=True)
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"))
    merged_name: Mapped[str | None] = mapped_column(String(200))
    merged_identities: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    agent: Mapped[Agent | None] = relationship()
class UpdateTrigger(str, enum.Enum):
    """The event or wait that makes the scheduler send a proactive update template."""

    # The conversation moved to a status (``trigger_params``: ``to_status``, optional ``from_status``).
    STATUS_CHANGED = "status_changed"
    # An agent or automatic assignment took the conversation.
    ASSIGNED = "assigned"
    # The customer has waited ``hours`` since their last message without an agent reply.
    NO_AGENT_REPLY = "no_agent_reply"
    # The conversation has waited ``hours`` unassigned in its team's queue.
    QUEUE_WAIT = "queue_wait"
    # The first agent reply is due within ``hours``, judged against the estimate.
    FIRST_RESPONSE_AT_RISK = "first_response_at_risk"
    # Every ``every_hours`` while the conversation stays open.
    PERIODIC = "periodic"
    # The conversation was resolved.
    RESOLVED = "resolved"


class UpdateTemplate(Base):
    """A proactive status update that managers configure and the scheduler sends.

    ``trigger`` is an ``UpdateTrigger`` value and ``trigger_params`` its settings, for example
    ``{"to_status": "pending"}`` or ``{"hours": 4, "business_hours": true}``. ``conditions``
    narrows the conversations it applies to, by optional lists under ``channels``,
    ``team_ids``, ``priorities``, ``labels`` and ``statuses``. The bodies are Jinja2 templates
    that run in the sandbox. Outside WhatsApp's 24-hour window only an approved template can be
    sent, so ``whatsapp_content_sid`` names it and ``whatsapp_variables`` maps its variable
    numbers to placeholder names. ``inbox.proactive.templates`` validates and renders all this.
    """

    __tablename__ = "update_templates"
    # Update log rows keep a deleted template's id without a foreign key, so SQLite must never
    # give that id to a new template (PostgreSQL's sequence never does).
    __table_args__ = (
        Index("ix_update_templates_trigger_enabled", "trigger", "enabled"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    trigger: Mapped[str] = mapped_column(String(40))
    trigger_params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    conditions: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    email_subject: Mapped[str] = mapped_column(Text, default="")
    email_body: Mapped[str] = mapped_column(Text, default="")
    whatsapp_body: Mapped[str] = mapped_column(Text, default="")
    whatsapp_content_sid: Mapped[str | None] = mapped_column(String(34))
    whatsapp_variables: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    # When the template last went from disabled to enabled; the sweep looks no further back.
    enabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    created_by: Mapped[Agent | None] = relationship()


class SendFailure(Base):
    """A send that a provider rejected or could not be reached for, kept for the channel's health.

    One row per failed send attempt (retried or not), and one per sent message that the
    provider reported failed or undelivered afterwards. ``error_code`` is the provider's code
    (Twilio's 63016, Meta's 131047, an SMTP reply code) when it gave one.
    """

    __tablename__ = "send_failures"
    __table_args__ = (Index("ix_send_failures_channel_failed_at", "channel_id", "failed_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id", ondelete="CASCADE"))
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id", ondelete="SET NULL"))
    failed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    error_code: Mapped[str | None] = mapped_column(String(40))
    error_message: Mapped[str] = mapped_column(Text, default="")


class PasswordReset(Base):
    """A one-time link that lets an agent choose a new password.

    Only the SHA-256 of the link's token is stored. The link works once, until
    ``expires_at``, and only while its agent is active.
    """

    __tablename__ = "password_resets"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    agent: Mapped[Agent] = relationship(foreign_keys=[agent_id])


class AuditEvent(Base):
    """One administrative change: who made it, what it was and what it changed.

    Written in the transaction of the change itself, so a change without its row (or a row
    without its change) cannot be committed. ``actor_id`` is None for the command line, and
    ``actor_label`` is then ``command line``. The label also keeps the actor's email after a rename.
    ``details`` never contains a password, token or other secret, only which setting changed.
    """

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_actor", "actor_id", "id"),
        Index("ix_audit_events_target", "target_type", "target_id", "id"),
        Index("ix_audit_events_action", "action", "id"),
        Index("ix_audit_events_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    actor_label: Mapped[str] = mapped_column(String(320))
    action: Mapped[str] = mapped_column(String(50))
    target_type: Mapped[str] = mapped_column(String(20))
    target_id: Mapped[int | None] = mapped_column(BigInteger)
    target_label: Mapped[str | None] = mapped_column(String(320))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class ProactiveResult(str, enum.Enum):
    """The state of one proactive update. ``inbox.proactive.sending`` moves it:

    deferred -> queued (quiet hours ended), deferred -> skipped, queued -> sent | failed.
    """

    # Its message and outbox item are committed; the dispatcher has not delivered it yet.
    QUEUED = "queued"
    SENT = "sent"
    # Waits for ``scheduled_for`` because the contact's quiet hours were on.
    DEFERRED = "deferred"
    # Not sent, for the ``reason`` recorded (opted out, channel disabled, daily cap, ...).
    SKIPPED = "skipped"
    FAILED = "failed"


class ProactiveSend(Base):
    """One occurrence of a proactive update for one conversation: the audit row and the guard.

    The unique key (template, conversation, occurrence) is inserted before the message is
    created, in the same transaction, so a second scheduler, a restart or a catch-up run
    finds the row and never sends that occurrence again. ``template_id`` has no foreign key
    so the audit rows outlive a deleted template; ``template_name`` keeps its name.
    """

    __tablename__ = "proactive_sends"
    __table_args__ = (
        UniqueConstraint("template_id", "conversation_id", "occurrence_key"),
        Index("ix_proactive_sends_result_scheduled_for", "result", "scheduled_for"),
        Index("ix_proactive_sends_conversation_created", "conversation_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    template_id: Mapped[int] = mapped_column(BigInteger, index=True)
    template_name: Mapped[str] = mapped_column(String(200), default="")
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    # What identifies the occurrence within its trigger, e.g. "activity:42" for a status
    # change or "period:3" for the third period of a periodic update.
    occurrence_key: Mapped[str] = mapped_column(String(100))
    trigger: Mapped[str] = mapped_column(String(40))
    # The channel kind the update goes out on ("email" or "whatsapp").
    channel: Mapped[str] = mapped_column(String(20))
    result: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str | None] = mapped_column(Text)
    # Set while deferred: the end of the contact's quiet hours.
    scheduled_for: Mapped[datetime | None] = mapped_column(UTCDateTime)
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    conversation: Mapped[Conversation] = relationship()
    message: Mapped[Message | None] = relationship()


class SatisfactionAnswer(Base):
    """A customer's answer to the satisfaction question sent when their conversation was resolved.

    One answer per question (``question_id``) and per inbound message. ``agent_id`` is the
    agent who resolved the conversation, else its assignee then.
    """

    __tablename__ = "satisfaction_answers"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"), index=True)
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"), index=True)
    question_id: Mapped[int] = mapped_column(ForeignKey("proactive_sends.id", ondelete="CASCADE"), unique=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), unique=True)
    # "rating" for a digit from 1 to 5, "yes_no" for yes (score 1) or no (score 0).
    kind: Mapped[str] = mapped_column(String(10))
    score: Mapped[int] = mapped_column(Integer)
    # The answer as the customer wrote it, trimmed ("5", "yes").
    answer: Mapped[str] = mapped_column(String(50))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# The proactive triggers read status and assignment changes by kind and time.
Index("ix_conversation_activities_action_created", ConversationActivity.action, ConversationActivity.created_at)

# APScheduler 3's SQLAlchemyJobStore table, declared here so that the migrations own it.
# Its columns are the ones that store defines (APScheduler 3.11, apscheduler/jobstores/sqlalchemy.py).
apscheduler_jobs = Table(
    "apscheduler_jobs",
    Base.metadata,
    Column("id", Unicode(191), primary_key=True),
    Column("next_run_time", Float(25), index=True),
    Column("job_state", LargeBinary, nullable=False),
)


class Note(Base):
    """An internal note that an agent adds to a conversation (not the contact's ``notes``).

    Notes are for colleagues only: they have no outbox row and no channel, so nothing ever
    sends one to the customer.
    """

    __tablename__ = "conversation_notes"
    __table_args__ = (Index("ix_conversation_notes_conversation", "conversation_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id"))
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    conversation: Mapped[Conversation] = relationship()
    agent: Mapped[Agent] = relationship()
    mentions: Mapped[list[Mention]] = relationship(back_populates="note", order_by="Mention.id")


class Mention(Base):
    """An agent named with @ in a note: their notification, unread until ``read_at``.

    Unique per (note, agent), so naming someone twice in one note notifies them once.
    """

    __tablename__ = "note_mentions"
    __table_args__ = (
        UniqueConstraint("note_id", "agent_id"),
        # The unread counter and the newest-first list of one agent.
        Index("ix_note_mentions_agent_read", "agent_id", "read_at", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    note_id: Mapped[int] = mapped_column(ForeignKey("conversation_notes.id", ondelete="CASCADE"))
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    note: Mapped[Note] = relationship(back_populates="mentions")
    agent: Mapped[Agent] = relationship()


class CannedResponse(Base):
    """A saved reply text that agents insert into the reply box, with placeholders.

    ``owner_id`` is None for a shared response, which managers maintain, and otherwise the
    agent whose personal response it is. Titles need not be unique.
    """

    __tablename__ = "canned_responses"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"), index=True)
    title: Mapped[str] = mapped_column(String(80))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    # The agent who last saved it; None once that agent is deleted.
    updated_by_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))


class AgentPresence(Base):
    """The agents connected to one web process, which that process keeps up to date.

    It lets every process, a ``switchboard worker`` among them, tell who is online
    (``inbox.presence``). ``seen_at`` is the process's last heartbeat, so the rows of a
    process that died stop counting once they are older than ``inbox.presence.FRESH_FOR``.
    """

    __tablename__ = "agent_presence"

    process_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"), primary_key=True, index=True)
    connections: Mapped[int] = mapped_column(Integer)
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
