"""Mailbox checkpoints and channel health, for the IMAP reader.

The checkpoint is (UIDVALIDITY, last UID) per channel and folder. It is saved only after
the messages up to that UID are committed, so a crash re-reads a little and loses nothing.
Ingestion drops the re-read mail as duplicates.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from inbox.models import Channel, MailboxCheckpoint, utcnow


def load_checkpoint(session: Session, channel_id: int, folder: str) -> tuple[int | None, int]:
    """Return (uidvalidity, last_uid) for the folder; (None, 0) when it was never read."""
    with session.begin():
        row = session.scalar(
            select(MailboxCheckpoint).where(
                MailboxCheckpoint.channel_id == channel_id, MailboxCheckpoint.folder == folder
            )
        )
        return (row.uidvalidity, row.last_uid) if row else (None, 0)


def save_checkpoint(
    session: Session, channel_id: int, folder: str, uidvalidity: int, last_uid: int
) -> None:
    """Store the folder's checkpoint and the channel's sync time, and commit."""
    for _ in range(2):
        try:
            with session.begin():
                row = session.scalar(
                    select(MailboxCheckpoint).where(
                        MailboxCheckpoint.channel_id == channel_id, MailboxCheckpoint.folder == folder
                    )
                )
                if row is None:
                    row = MailboxCheckpoint(channel_id=channel_id, folder=folder)
                    session.add(row)
                row.uidvalidity = uidvalidity
                row.last_uid = last_uid
                channel = session.get(Channel, channel_id)
                if channel is not None:
                    channel.last_sync_at = utcnow()
                    channel.last_error = None
            return
        except IntegrityError:
            continue  # another reader created the row first; update it


def record_channel_error(session: Session, channel_id: int, error: str) -> None:
    """Store the channel's latest error for admins and the API, and commit."""
    with session.begin():
        channel = session.get(Channel, channel_id)
        if channel is not None:
            channel.last_error = error[:2000]
            channel.last_error_at = utcnow()
