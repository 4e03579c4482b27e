"""Send failures per channel: what the channel health shows beside the inbound side.

A row is recorded for every send attempt that a provider rejected or could not be reached
for (also when the outbox retries it), and for every sent message that the provider later
reported failed or undelivered. Rows are kept for ``RETENTION``, so the health shows the
last failure of that period and how many happened in the last 24 hours.

NOTE: a bounce marks an email reply undelivered during ingestion, which records no failure
here, so bounced mail is missing from the count.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from inbox.models import SendFailure, utcnow

log = logging.getLogger(__name__)

RETENTION = timedelta(days=30)
RECENT = timedelta(hours=24)
# The length of SendFailure.error_code; providers' codes are far shorter.
_MAX_CODE_LENGTH = 40


@dataclass(frozen=True)
class SendFailureSummary:
    """A channel's latest send failure and the number of failures in the last 24 hours."""

    last_failed_at: datetime | None = None
    last_error_code: str | None = None
    last_error_message: str | None = None
    failed_last_24h: int = 0


def record_send_failure(
    session: Session,
    channel_id: int,
    error_message: str,
    *,
    error_code: str | None = None,
    message_id: int | None = None,
    now: datetime | None = None,
) -> None:
    """Add a send failure of the channel to the caller's transaction, and drop the channel's
    rows older than ``RETENTION``."""
    now = now or utcnow()
    session.add(SendFailure(
        channel_id=channel_id,
        message_id=message_id,
        failed_at=now,
        error_code=str(error_code)[:_MAX_CODE_LENGTH] if error_code else None,
        error_message=error_message[:2000],
    ))
    session.execute(
        delete(SendFailure)
        .where(SendFailure.channel_id == channel_id, SendFailure.failed_at < now - RETENTION)
        .execution_options(synchronize_session=False)
    )
    log.info("channel %s: send failure recorded (code %s)", channel_id, error_code or "none")


def send_failure_summaries(
    session: Session, channel_ids: Iterable[int], now: datetime | None = None
) -> dict[int, SendFailureSummary]:
    """Return the send failure summary of each channel in ``channel_ids``; channels without
    failures get an empty summary."""
    now = now or utcnow()
    ids = list(channel_ids)
    summaries = {channel_id: SendFailureSummary() for channel_id in ids}
    if not ids:
        return summaries

    counts = dict(session.execute(
        select(SendFailure.channel_id, func.count())
        .where(SendFailure.channel_id.in_(ids), SendFailure.failed_at >= now - RECENT)
        .group_by(SendFailure.channel_id)
    ).all())
    latest_ids = select(func.max(SendFailure.id)).where(SendFailure.channel_id.in_(ids)).group_by(SendFailure.channel_id)
    for row in session.scalars(select(SendFailure).where(SendFailure.id.in_(latest_ids))):
        summaries[row.channel_id] = SendFailureSummary(
            last_failed_at=row.failed_at,
            last_error_code=row.error_code,
            last_error_message=row.error_message,
            failed_last_24h=counts.get(row.channel_id, 0),
        )
    return summaries
