"""The download queue of provider-hosted media (WhatsApp images, voice notes, documents).

A webhook must be answered within the provider's timeout, so ingestion only records each
media file as a pending ``Attachment`` with its URL. A worker claims one due row at a time
(``claim_next_media``), downloads it outside any transaction, and records the outcome:
``record_media_stored`` or ``record_media_failed``, which retries transient failures with
backoff. A claim is a lease: when a worker dies mid-download, the row is due again after the
lease, and downloading twice is harmless because files are stored by their digest.
"""

from __future__ import annotations

import logging
import mimetypes
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from channels.types import MediaReference
from inbox.events import record_event
from inbox.models import Attachment, Message, utcnow
from inbox.outbox import backoff_delay
from inbox.serialize import message_to_dict

log = logging.getLogger(__name__)

PENDING = "pending"
STORED = "stored"
FAILED = "failed"

# Twilio's media can take a few seconds to become available. Eight tries with the outbox's
# backoff span about ten minutes, and then the file is given up on.
MAX_FETCH_ATTEMPTS = 8
FETCH_LEASE = timedelta(minutes=5)


@dataclass(frozen=True)
class PendingMedia:
    """One claimed download: where to fetch it and with which channel's credentials."""

    attachment_id: int
    message_id: int
    channel_id: int
    channel_settings: dict[str, Any]
    url: str
    expected_type: str
    filename_stem: str
    attempt: int


def pending_media_rows(media: list[MediaReference], now: datetime) -> list[Attachment]:
    """Return a pending attachment row per media reference of an inbound message."""
    rows = []
    for index, reference in enumerate(media, start=1):
        stem = f"{reference.content_type.partition('/')[0] or 'file'}-{index}"
        extension = mimetypes.guess_extension(reference.content_type) or ""
        rows.append(Attachment(
            filename=f"{stem}{extension}"[:500],
            content_type=reference.content_type[:200],
            size=0,
            inline=False,
            source_url=reference.url[:2000],
            fetch_status=PENDING,
            fetch_attempts=0,
            next_fetch_at=now,
        ))
    return rows


def claim_next_media(session: Session, now: datetime | None = None, lease: timedelta = FETCH_LEASE) -> PendingMedia | None:
    """Claim the most overdue pending download for one attempt, and commit. None when none is due."""
    now = now or utcnow()
    with session.begin():
        row = session.scalar(
            select(Attachment)
            .where(Attachment.fetch_status == PENDING, Attachment.next_fetch_at <= now)
            .order_by(Attachment.next_fetch_at, Attachment.id)
            .limit(1)
            .with_for_update(skip_locked=True)
        )
        if row is None:
            return None
        row.fetch_attempts = (row.fetch_attempts or 0) + 1
        row.next_fetch_at = now + lease
        channel = row.message.channel
        return PendingMedia(
            attachment_id=row.id,
            message_id=row.message_id,
            channel_id=channel.id,
            channel_settings=dict(channel.settings),
            url=row.source_url or "",
            expected_type=row.content_type,
            filename_stem=row.filename.rsplit(".", 1)[0],
            attempt=row.fetch_attempts,
        )


def record_media_stored(
    session: Session, attachment_id: int, *, storage_key: str, size: int, content_type: str, filename: str
) -> None:
    """Record a finished download and publish the message's new state, and commit."""
    with session.begin():
        row = session.get(Attachment, attachment_id, with_for_update=True)
        if row is None or row.fetch_status != PENDING:
            return  # another worker finished it after this one's lease expired
        row.fetch_status = STORED
        row.storage_key = storage_key
        row.size = size
        row.content_type = content_type[:200]
        row.filename = filename[:500]
        row.next_fetch_at = None
        _publish_message(session, row.message)
    log.info("media of message %s stored as attachment %s (%s bytes)", row.message_id, attachment_id, size)


def record_media_failed(
    session: Session, attachment_id: int, reason: str, *, transient: bool, now: datetime | None = None
) -> None:
    """Schedule a retry of a transient failure, or give the download up and show why; commit."""
    now = now or utcnow()
    with session.begin():
        row = session.get(Attachment, attachment_id, with_for_update=True)
        if row is None or row.fetch_status != PENDING:
            return
        if transient and row.fetch_attempts < MAX_FETCH_ATTEMPTS:
            row.next_fetch_at = now + backoff_delay(row.fetch_attempts)
            log.warning(
                "media attachment %s of message %s: attempt %s failed, retrying at %s: %s",
                attachment_id, row.message_id, row.fetch_attempts, row.next_fetch_at.isoformat(), reason,
            )
            return
        row.fetch_status = FAILED
        row.next_fetch_at = None
        row.omitted_reason = reason[:500]
        _publish_message(session, row.message)
    log.error("media attachment %s of message %s failed for good: %s", attachment_id, row.message_id, reason)


def _publish_message(session: Session, message: Message) -> None:
    session.flush()
    record_event(session, "message.updated", {"message": message_to_dict(message)}, message.conversation_id)
