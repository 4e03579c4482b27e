"""Mailbox checkpoints and health, for the IMAP reader and the Sent copy of replies.

The checkpoint is (UIDVALIDITY, last UID) per channel and folder. It is saved only after
the messages up to that UID are committed, so a crash re-reads a little and loses nothing.
Ingestion drops the re-read mail as duplicates.

Each folder's row also records its health (last full read, latest error), so one folder
that fails shows apart from the others. Errors of the whole connection go on the channel.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from inbox.models import Channel, MailboxCheckpoint, utcnow

# Longer errors are truncated, so a server that sends pages of text cannot bloat the row.
MAX_ERROR_LENGTH = 2000


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

    def advance(row: MailboxCheckpoint, channel: Channel | None) -> None:
        row.uidvalidity = uidvalidity
        row.last_uid = last_uid
        if channel is not None:
            channel.last_sync_at = utcnow()
            channel.last_error = None

    _update_folder(session, channel_id, folder, advance)


def record_folder_synced(session: Session, channel_id: int, folder: str) -> None:
    """Record that the folder was read through just now, clear its error, and commit.

    The channel's own error is cleared too, because the connection evidently works.
    """

    def synced(row: MailboxCheckpoint, channel: Channel | None) -> None:
        now = utcnow()
        row.last_sync_at = now
        row.last_error = None
        if channel is not None:
            channel.last_sync_at = now
            channel.last_error = None

    _update_folder(session, channel_id, folder, synced)


def record_folder_error(session: Session, channel_id: int, folder: str, error: str) -> None:
    """Store the folder's latest error and commit."""

    def failed(row: MailboxCheckpoint, channel: Channel | None) -> None:
        row.last_error = error[:MAX_ERROR_LENGTH]
        row.last_error_at = utcnow()

    _update_folder(session, channel_id, folder, failed)


def record_channel_error(session: Session, channel_id: int, error: str) -> None:
    """Store the channel's latest error for admins and the API, and commit."""
    with session.begin():
        channel = session.get(Channel, channel_id)
        if channel is not None:
            channel.last_error = error[:MAX_ERROR_LENGTH]
            channel.last_error_at = utcnow()


def record_sent_copy_outcome(session: Session, channel_id: int, error: str | None) -> None:
    """Store a failed Sent copy as the channel's warning, or clear it after a success, and commit."""
    with session.begin():
        channel = session.get(Channel, channel_id)
        if channel is None:
            return
        if error is not None:
            channel.sent_copy_error = error[:MAX_ERROR_LENGTH]
            channel.sent_copy_error_at = utcnow()
        elif channel.sent_copy_error is not None:
            channel.sent_copy_error = None
            channel.sent_copy_error_at = None


def folder_states(session: Session, channel_ids: Iterable[int]) -> dict[tuple[int, str], MailboxCheckpoint]:
    """Return the checkpoint rows of these channels, keyed by (channel id, folder)."""
    rows = session.scalars(
        select(MailboxCheckpoint).where(MailboxCheckpoint.channel_id.in_(list(channel_ids)))
    )
    return {(row.channel_id, row.folder): row for row in rows}


def _update_folder(
    session: Session,
    channel_id: int,
    folder: str,
    change: Callable[[MailboxCheckpoint, Channel | None], None],
) -> None:
    """Apply ``change`` to the folder's row (created when missing) and to the channel, and commit."""
    for _ in range(2):
        try:
            with session.begin():
                row = session.scalar(
                    select(MailboxCheckpoint).where(
                        MailboxCheckpoint.channel_id == channel_id, MailboxCheckpoint.folder == folder
                    )
                )
                if row is None:
                    row = MailboxCheckpoint(channel_id=channel_id, folder=folder, last_uid=0)
                    session.add(row)
                change(row, session.get(Channel, channel_id))
            return
        except IntegrityError:
            continue  # another reader created the row first; update it
