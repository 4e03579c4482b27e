"""Background workers: IMAP readers, the outbox dispatcher, the webhook worker, APScheduler and the proactive scheduler.

``switchboard run`` starts them inside the web process; ``switchboard worker`` runs them
alone. Each loop isolates its items: one bad mail or one failed send is recorded and logged
with its ids, and the loop goes on.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for_futures
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor as SchedulerThreadPool
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import select
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session

from channels.email.imap import Checkpoint, FetchedMail, FolderError, ImapReader, ImapSettings
from channels.email.parse import parse_emails
from channels.email.parser_process import ParserProcess, ParserStopped
from channels.email.smtp import SmtpSettings, prepare_email, send_email
from channels.errors import ChannelError, SendError, SendLookupError
from channels.types import InboundMessage, SendResult
from channels.whatsapp import send_whatsapp
from channels.whatsapp.twilio import TwilioSettings, find_sent_whatsapp
from channels.whatsapp.meta.graph import MAX_TEXT_LENGTH as META_MAX_TEXT_LENGTH
from channels.whatsapp.meta import MetaSettings
from channels.whatsapp.meta import send_media as send_meta_media
from channels.whatsapp.meta import send_message as send_meta_message
from channels.whatsapp.meta import upload_media as upload_meta_media
from channels.whatsapp.errors import RateLimitedError
from channels.whatsapp.parts import PlannedPart, plan_parts
from gateway import Switchboard
from gateway.channel_settings import (
    channel_tokens,
    imap_settings,
    mailbox_settings,
    meta_settings,
    smtp_settings,
    twilio_settings,
)
from gateway.locks import AdvisoryLock
from gateway.media import MediaFetcher
from gateway.scheduler import ProactiveScheduler
from inbox.channel_config import email_folders, sent_folder
from gateway.webhook_worker import WebhookWorker
from gateway.webhooks import media_url
from inbox.ingest import ingest_batch, record_failed_payload
from inbox.mailboxes import (
    load_checkpoint,
    record_channel_error,
    record_folder_error,
    record_folder_synced,
    record_sent_copy_outcome,
    save_checkpoint,
)
from inbox.models import Attachment, Channel, utcnow
from inbox.outbox import (
    LeasePolicy,
    PendingSend,
    backoff_delay,
    claim_next,
    mark_attempt_failed,
    mark_part_sent,
    mark_sent,
    record_window_error,
    recorded_provider_ids,
    recover_abandoned_sends,
    seconds_until_next_send,
)
from inbox.storage import attachment_store
from inbox.window import is_window_error
from inbox.workflow import wake_snoozed_conversations

log = logging.getLogger(__name__)

# How often a reader waiting for another process's mailbox lease tries to acquire it.
MAILBOX_LEASE_RETRY_SECONDS = 15.0
# How long an IDLE lasts before the reader checks its channel's settings again (a stop
# request ends it at once).
IDLE_SLICE_SECONDS = 60.0
# A long import saves its checkpoint at most this often, and once more when it ends. Each
# save is a transaction of its own, which after every batch of 50 mails took about 6% of
# the reader's time in the import benchmark. After a crash the mail stored in the last
# interval is fetched again, and ingestion drops it as duplicates.
CHECKPOINT_INTERVAL_SECONDS = 1.0
RECONNECT_BACKOFF_START = 5.0
RECONNECT_BACKOFF_MAX = 300.0
# How often a reader waiting to reconnect looks whether its channel's settings changed.
SETTINGS_CHECK_SECONDS = 5.0
# A dispatch round waits for a sender's pacing slot up to this long instead of ending.
PACING_WAIT_SECONDS = 1.0
# Time that one send attempt may spend outside its sender's timeouts, such as the database
# work around the provider call. Resolving the provider's host name is not under a timeout
# either, and glibc's resolver gives up after 30 s at most (5 s per try, 2 tries, 3 servers).
LEASE_MARGIN = timedelta(seconds=30)
# API requests of one send attempt on Meta's Cloud API: a file is uploaded before its message.
META_REQUESTS_PER_ATTEMPT = 2
# Network operations of one SMTP submission, each under the sender's timeout. They are the
# connect, greeting, EHLO, STARTTLS and its handshake, EHLO again, AUTH (up to two exchanges,
# or an XOAUTH2 token refresh and a second try), MAIL, RCPT, DATA, the message, its reply and QUIT.
SMTP_OPERATIONS_PER_ATTEMPT = 16
CHANNEL_REFRESH_SECONDS = 30
# How often the snooze wake job runs, so about how late after its time a snoozed conversation opens.
SNOOZE_WAKE_SECONDS = 30


class OutboxDispatcher:
    """Sends due outbox items, several at once: woken at once by new replies, else polling.

    Each item is claimed right before its provider call, so a claim's lease covers one send
    attempt (see ``inbox.outbox``), and ``attempt_lease`` sizes it from the sender's timeouts.
    Several dispatchers, in one process or many, can run side by side. ``clock`` and
    ``lease`` exist for tests that move time or fix the lease.
    """

    # Recording an outcome is retried on these database errors ("database is locked", a
    # dropped connection), because the provider call it records cannot be undone.
    RECORD_ERRORS = (OperationalError, InterfaceError)
    RECORD_ATTEMPTS = 5
    RECORD_BACKOFF_SECONDS = 0.5

    def __init__(
        self,
        state: Switchboard,
        stop: threading.Event,
        *,
        clock: Callable[[], datetime] = utcnow,
        lease: timedelta | None = None,
    ):
        self.state = state
        self.stop = stop
        self.clock = clock
        self.lease: timedelta | LeasePolicy = lease if lease is not None else self.attempt_lease

    def run(self) -> None:
        log.info("outbox dispatcher started")
        if not self.state.config.public_url:
            log.warning(
                "SWITCHBOARD_PUBLIC_URL is not set: WhatsApp replies go out without status "
                "callbacks, so they stay queued, and replies with attachments fail"
            )
        while not self.stop.is_set():
            try:
                self.dispatch_due()
                wait = self._seconds_until_next_send()
            except Exception:
                log.exception("outbox dispatch round failed")
                wait = self.state.config.outbox_poll_interval
            self.state.outbox_wakeup.wait(wait)
            self.state.outbox_wakeup.clear()
        log.info("outbox dispatcher stopped")

    def _seconds_until_next_send(self) -> float:
        """Return how long to sleep: until a paced or backed-off item is due, at most a poll interval."""
        with self.state.session_factory() as session:
            due_in = seconds_until_next_send(session, self.clock())
        return self._sleep_time(due_in)

    def _sleep_time(self, due_in: float | None) -> float:
        poll = self.state.config.outbox_poll_interval
        if due_in is None:
            return poll
        # A floor keeps a clock skew between processes from turning into a busy loop.
        return min(poll, max(due_in, 0.005))

    def send_intervals(self) -> dict[str, timedelta]:
        """Return the minimum time between two sends of one channel, by channel kind."""
        rate = self.state.config.whatsapp_send_rate
        return {"whatsapp": timedelta(seconds=1 / rate)} if rate > 0 else {}

    def attempt_lease(self, kind: str, settings: Mapping[str, Any], looks_up_first: bool) -> timedelta:
        """Return the lease of one claim: the longest one send attempt can take, plus ``LEASE_MARGIN``.

        A Twilio attempt makes one API request, or two when it first looks up an unconfirmed
        send. Each request waits at most ``SWITCHBOARD_TWILIO_TIMEOUT`` to connect and as
        long again for the response. A Meta attempt makes up to two requests (a file is
        uploaded before its message is sent), and an SMTP submission up to
        ``SMTP_OPERATIONS_PER_ATTEMPT`` network operations, each with its sender's timeout.
        """
        # NOTE: a timeout bounds each socket operation, not a whole transfer. A large file
        # uploaded to Meta or sent by SMTP over a slow link, a server that trickles its
        # response, or a host name with several unreachable addresses (each gets the connect
        # timeout) can make an attempt outlast its lease. Another worker then settles it as
        # abandoned: Meta and SMTP replies show an unknown outcome until the late send is
        # recorded, and a Twilio reply is looked up, so a message that Twilio creates only
        # after that lookup is sent twice.
        if kind == "email":
            return SMTP_OPERATIONS_PER_ATTEMPT * timedelta(seconds=SmtpSettings.timeout) + LEASE_MARGIN
        if settings.get("provider") == "meta":
            request = 2 * timedelta(seconds=MetaSettings.timeout_seconds)
            return META_REQUESTS_PER_ATTEMPT * request + LEASE_MARGIN
        request = 2 * timedelta(seconds=self.state.config.twilio_timeout)
        return (2 if looks_up_first else 1) * request + LEASE_MARGIN

    def dispatch_due(self) -> int:
        """Send due items until none is left or the dispatcher stops. Returns how many were attempted.

        Up to ``SWITCHBOARD_OUTBOX_CONCURRENCY`` sends run at once, each in a thread of the
        round's pool. A provider call that hangs until its timeout therefore holds up only
        the later replies to its own contact, which ``claim_next`` keeps in order, while
        replies to other contacts on the same channel go out at the channel's pace. With a
        concurrency of 2 or more, one channel takes all slots but one at most, so that sends
        hanging on its provider leave a slot for the replies of other channels. The round
        ends once no send is running and nothing is due. It first settles the items whose
        earlier attempt never finished (``recover_abandoned_sends``), and again every poll
        interval while it lasts.
        """
        concurrency = self.state.config.outbox_concurrency
        channel_slots = max(1, concurrency - 1)
        running: dict[Future[None], PendingSend] = {}
        attempted = 0
        waited = False
        self._recover_abandoned()
        recovered_at = time.monotonic()
        with ThreadPoolExecutor(concurrency, thread_name_prefix="outbox-send") as pool:
            while not self.stop.is_set():
                running = self._without_finished(running)
                if time.monotonic() - recovered_at >= self.state.config.outbox_poll_interval:
                    self._recover_abandoned(running.values())
                    recovered_at = time.monotonic()
                if len(running) >= concurrency:
                    wait_for_futures(running, return_when=FIRST_COMPLETED)
                    continue

                full = _full_channels(running.values(), channel_slots)
                with self.state.session_factory() as session:
                    pending = claim_next(
                        session, self.clock(), self.lease, self.send_intervals(), skip_channels=full
                    )
                if pending is not None:
                    waited = False
                    future = pool.submit(self.dispatch_claimed, pending)
                    future.add_done_callback(lambda _: self.state.outbox_wakeup.set())
                    running[future] = pending
                    attempted += 1
                    continue

                with self.state.session_factory() as session:
                    due_in = seconds_until_next_send(session, self.clock(), skip_channels=full)
                if running:
                    # Sleep until a send ends, a new reply wakes the dispatcher, or an item is due.
                    self.state.outbox_wakeup.wait(self._sleep_time(due_in))
                    self.state.outbox_wakeup.clear()
                    continue
                # A sender's pacing interval is short: wait for it once rather than end the
                # round, so that queued parts and replies go out together.
                if waited or due_in is None or due_in > PACING_WAIT_SECONDS:
                    break
                self.stop.wait(max(due_in, 0.005))
                waited = True
        return attempted

    def _recover_abandoned(self, running: Iterable[PendingSend] = ()) -> None:
        """Settle the abandoned sends, except those in ``running``, which this dispatcher still makes.

        A send of its own outlives its lease only when it is slow or the clock jumped ahead.
        Its thread records the outcome, so a lookup meanwhile could miss a message that the
        provider creates a moment later, and send the reply twice.
        """
        own = [pending.item_id for pending in running]
        with self.state.session_factory() as session:
            recover_abandoned_sends(session, self.clock(), can_look_up=can_look_up_sends, skip_items=own)

    @staticmethod
    def _without_finished(running: dict[Future[None], PendingSend]) -> dict[Future[None], PendingSend]:
        """Return the sends still running, after logging those that ended with an exception.

        ``dispatch_claimed`` records every send error itself, so such an exception is a bug.
        Its item stays in flight until its lease expires and it is settled as abandoned.
        """
        still_running = {}
        for future, pending in running.items():
            if not future.done():
                still_running[future] = pending
                continue
            error = future.exception()
            if error is not None:
                log.error(
                    "outbox item %s: unexpected error in the send attempt", pending.item_id,
                    exc_info=(type(error), error, error.__traceback__),
                )
        return still_running

    def dispatch_claimed(self, pending: PendingSend) -> None:
        """Send one claimed item and record the outcome under its claim.

        When an earlier attempt may have reached the provider unanswered, the item is first
        looked up there (``_find_unconfirmed_send``). A message found is recorded as this
        item's send, and nothing is sent. When the lookup fails, nothing is sent either, and
        the item is retried with backoff.

        An email reply is then copied to the channel's Sent folder, when one is set. That
        copy comes after the outcome is recorded, so its failure can neither resend the
        mail nor fail the reply.
        """
        if pending.unconfirmed_since is not None:
            try:
                found = self._find_unconfirmed_send(pending)
            except SendLookupError as error:
                log.warning("outbox item %s: lookup of an unconfirmed send failed: %s", pending.item_id, error)
                self._record_failure(pending, str(error), transient=True, unconfirmed=True)
                return
            except Exception as error:  # an adapter bug must neither stop the loop nor resend
                log.exception("outbox item %s: unexpected error looking up an unconfirmed send", pending.item_id)
                self._record_failure(pending, f"Internal error: {error}", transient=True, unconfirmed=True)
                return
            if found is not None:
                self._record_sent(pending, found)
                return

        try:
            result, mime = self.send(pending)
        except RateLimitedError as error:
            self._record_rate_limit(pending, error)
            return
        except SendError as error:
            reason = f"{error} (code {error.code})" if error.code and error.code not in str(error) else str(error)
            if is_window_error(error.code):
                self._record_window_error(pending, reason, error.code)
            else:
                self._record_failure(
                    pending, reason, transient=error.transient, error_code=error.code,
                    unconfirmed=getattr(error, "may_have_sent", False) and self._can_look_up(pending),
                )
            return
        except Exception as error:  # an adapter bug must not stop the loop or lose the item
            log.exception("outbox item %s: unexpected send error", pending.item_id)
            self._record_failure(pending, f"Internal error: {error}", transient=True)
            return

        self._record_sent(pending, result)
        if mime is not None:
            self._file_sent_copy(pending, result, mime)

    def _record_sent(self, pending: PendingSend, result: SendResult) -> None:
        parts = self._whatsapp_parts(pending) if pending.channel_kind == "whatsapp" else []

        def record_sent(session: Session) -> None:
            if len(parts) > 1:
                mark_part_sent(
                    session, pending.item_id, pending.sent_parts, result,
                    last=pending.sent_parts == len(parts) - 1, claim_token=pending.claim_token,
                )
            else:
                mark_sent(session, pending.item_id, result, claim_token=pending.claim_token)

        self._record_outcome(pending, f"send as {result.provider_message_id}", record_sent)

    @staticmethod
    def _can_look_up(pending: PendingSend) -> bool:
        """Return whether the provider of the item's channel can be asked for an earlier send."""
        return can_look_up_sends(pending.channel_kind, pending.channel_settings)

    def _find_unconfirmed_send(self, pending: PendingSend) -> SendResult | None:
        """Return the message that an unanswered earlier attempt at the current part created
        at Twilio, or None when there is none.

        A message that another reply or part of the channel already recorded is never
        adopted. When several copies match, the oldest is adopted and the others are logged.
        Raises SendLookupError when Twilio cannot be asked.
        """
        if not self._can_look_up(pending):
            raise SendLookupError(f"channel kind {pending.channel_kind!r} has no lookup of earlier sends")
        assert pending.unconfirmed_since is not None
        part = self._whatsapp_parts(pending)[pending.sent_parts]
        settings = self._twilio_settings(pending)
        found = find_sent_whatsapp(
            settings, dataclasses.replace(pending.outbound, text=part.text),
            attempted_since=pending.unconfirmed_since,
            media_count=0 if part.media_index is None else 1,
        )
        with self.state.session_factory() as session:
            recorded = recorded_provider_ids(session, pending.channel_id, [r.provider_message_id for r in found])
        candidates = [result for result in found if result.provider_message_id not in recorded]
        if not candidates:
            log.info(
                "outbox item %s part %s: Twilio has no message from the unanswered attempt that began "
                "at %s, so it is sent again", pending.item_id, pending.sent_parts + 1,
                pending.unconfirmed_since.isoformat(),
            )
            return None
        if len(candidates) > 1:
            log.warning(
                "outbox item %s part %s: Twilio created %s copies (%s); the oldest is recorded",
                pending.item_id, pending.sent_parts + 1, len(candidates),
                ", ".join(result.provider_message_id for result in candidates),
            )
        log.info(
            "outbox item %s part %s: the unanswered attempt created %s at Twilio, recorded as the send",
            pending.item_id, pending.sent_parts + 1, candidates[0].provider_message_id,
        )
        return candidates[0]

    def _record_failure(
        self,
        pending: PendingSend,
        reason: str,
        *,
        transient: bool,
        pause_until: datetime | None = None,
        error_code: str | None = None,
        unconfirmed: bool = False,
    ) -> None:
        def record_failed(session: Session) -> None:
            mark_attempt_failed(
                session, pending.item_id, reason, transient=transient,
                claim_token=pending.claim_token, now=self.clock(), pause_until=pause_until,
                error_code=error_code, unconfirmed=unconfirmed,
            )

        self._record_outcome(pending, "failed attempt", record_failed)

    def _record_window_error(self, pending: PendingSend, reason: str, error_code: str | None) -> None:
        """Hold a reply that WhatsApp refused because the 24-hour window closed (Twilio 63016, Meta 131047)."""

        def record_held(session: Session) -> None:
            record_window_error(
                session, pending.item_id, reason, claim_token=pending.claim_token, now=self.clock(),
                error_code=error_code,
            )

        self._record_outcome(pending, "window error", record_held)

    def _record_rate_limit(self, pending: PendingSend, error: RateLimitedError) -> None:
        """Pause the channel for the provider's Retry-After, or for the backoff without one."""
        if error.retry_after is not None:
            wait = timedelta(seconds=error.retry_after)
        else:
            wait = backoff_delay(pending.attempt)
        log.warning(
            "outbox item %s: channel %s is rate limited, pausing its sends for %.1f s",
            pending.item_id, pending.channel_id, wait.total_seconds(),
        )
        self._record_failure(
            pending, str(error), transient=True, pause_until=self.clock() + wait, error_code=error.code
        )

    def _record_outcome(self, pending: PendingSend, outcome: str, record: Callable[[Session], None]) -> None:
        """Run ``record`` in a fresh session, retrying database errors with a short backoff.

        When every attempt fails, the item stays in flight. Once its lease expires, a dispatch
        round settles it as abandoned (``recover_abandoned_sends``): a Twilio reply is looked
        up before it is sent again, and any other fails with an unknown outcome.
        """
        delay = self.RECORD_BACKOFF_SECONDS
        for attempt in range(1, self.RECORD_ATTEMPTS + 1):
            try:
                with self.state.session_factory() as session:
                    record(session)
                return
            except self.RECORD_ERRORS as error:
                if attempt == self.RECORD_ATTEMPTS:
                    log.error(
                        "outbox item %s: could not record the %s after %s attempts: %s",
                        pending.item_id, outcome, attempt, error,
                    )
                    return
                log.warning(
                    "outbox item %s: recording the %s failed (attempt %s of %s), retrying in %.1f s: %s",
                    pending.item_id, outcome, attempt, self.RECORD_ATTEMPTS, delay, error,
                )
                time.sleep(delay)
                delay *= 2

    def send(self, pending: PendingSend) -> tuple[SendResult, EmailMessage | None]:
        """Send one item through its channel's provider.

        Returns the provider's result and, for email, the MIME message exactly as sent.
        Raises ``SendError``.
        """
        config = self.state.config
        settings = pending.channel_settings
        if pending.channel_kind == "email":
            tokens = channel_tokens(self.state.session_factory, pending.channel_id, settings)
            smtp = smtp_settings(pending.outbound.sender.display_name or "", pending.channel_address, settings, tokens)
            mime = prepare_email(pending.outbound, smtp)
            return send_email(smtp, pending.outbound, mime), mime
        if pending.channel_kind == "whatsapp" and settings.get("provider") == "meta":
            # Meta reports delivery to the app's webhook, so no callback URL goes along.
            return self._send_meta_part(pending), None
        if pending.channel_kind == "whatsapp":
            return self._send_whatsapp_part(pending), None
        raise SendError(f"channel kind {pending.channel_kind!r} cannot send", transient=False)

    def _whatsapp_parts(self, pending: PendingSend) -> list[PlannedPart]:
        if pending.outbound.content_sid or pending.outbound.template_name:
            return [PlannedPart(pending.outbound.text)]  # a template goes as one message
        media_types = [a.content_type for a in pending.attachments]
        if pending.channel_settings.get("provider") == "meta":
            return plan_parts(pending.outbound.text, media_types, META_MAX_TEXT_LENGTH)
        return plan_parts(pending.outbound.text, media_types)

    def _send_meta_part(self, pending: PendingSend) -> SendResult:
        """Send the next part of a reply on a Meta channel: its text, or its file uploaded first."""
        settings = meta_settings(pending.channel_settings, self.state.config)
        part = self._whatsapp_parts(pending)[pending.sent_parts]
        if part.media_index is None:
            return send_meta_message(settings, dataclasses.replace(pending.outbound, text=part.text))
        attachment = pending.attachments[part.media_index]
        with self.state.session_factory() as session:
            stored = session.get(Attachment, attachment.id)
            if stored is None or stored.storage_key is None:
                raise SendError(f"attachment {attachment.filename!r} is no longer stored", transient=False)
            data = attachment_store(session).read(stored.storage_key)
        media_id = upload_meta_media(settings, data, attachment.content_type, attachment.filename)
        return send_meta_media(
            settings, pending.outbound.to, media_id, attachment.content_type,
            filename=attachment.filename, caption=part.text,
        )

    def _send_whatsapp_part(self, pending: PendingSend) -> SendResult:
        """Send the next part of a WhatsApp reply: its text, or its attachment as a signed URL."""
        config = self.state.config
        parts = self._whatsapp_parts(pending)
        if pending.sent_parts >= len(parts):
            raise SendError(
                f"all {len(parts)} parts were sent already, yet the reply is still queued", transient=False
            )
        part = parts[pending.sent_parts]
        callback = None
        attachment_url = None
        if config.public_url:
            callback = f"{config.public_url.rstrip('/')}/webhooks/twilio/{pending.channel_id}/status"
        if part.media_index is not None:
            if not config.public_url:
                raise SendError(
                    "Twilio fetches attachments from this service, so SWITCHBOARD_PUBLIC_URL must be set "
                    "to its public https address", transient=False,
                )
            attachment = pending.attachments[part.media_index]
            attachment_url = media_url(config.public_url, config.secret_key, pending.channel_id, attachment.id)
        outbound = dataclasses.replace(pending.outbound, text=part.text, status_callback_url=callback)
        settings = self._twilio_settings(pending)
        return send_whatsapp(settings, outbound, media_url=attachment_url)

    def _twilio_settings(self, pending: PendingSend) -> TwilioSettings:
        """Return the channel's Twilio settings with the configured timeout, which ``attempt_lease`` counts on."""
        settings = twilio_settings(pending.channel_address, pending.channel_settings, self.state.config)
        return dataclasses.replace(settings, timeout_seconds=self.state.config.twilio_timeout)

    def _file_sent_copy(self, pending: PendingSend, result: SendResult, mime: EmailMessage) -> None:
        """Append the sent mail to the channel's Sent folder, marked \\Seen, when one is set.

        A failure is logged with the ids and stored as the channel's warning, which the
        next successful copy clears. The reply stays sent either way.
        """
        folder = sent_folder(pending.channel_settings)
        if folder is None:
            return
        error: str | None = None
        try:
            tokens = channel_tokens(self.state.session_factory, pending.channel_id, pending.channel_settings)
            with ImapReader(mailbox_settings(pending.channel_settings, tokens, folder=folder)) as mailbox:
                mailbox.append(mime.as_bytes(), self.clock())
        except ChannelError as failure:
            error = str(failure)
        except Exception as failure:  # the reply is sent; an adapter bug must not undo that
            log.exception("outbox item %s: unexpected error copying to the Sent folder", pending.item_id)
            error = f"Internal error: {failure}"
        if error is not None:
            log.warning(
                "channel %s: copy of message %s (outbox item %s, Message-ID %s) to folder %r failed: %s",
                pending.channel_id, pending.message_id, pending.item_id, result.provider_message_id, folder, error,
            )
            error = f"Message {pending.message_id} was sent, but its copy to {folder!r} failed: {error}"
        try:
            with self.state.session_factory() as session:
                record_sent_copy_outcome(session, pending.channel_id, error)
        except self.RECORD_ERRORS as failure:
            log.warning("channel %s: could not store the outcome of the Sent copy: %s", pending.channel_id, failure)


def _full_channels(running: Iterable[PendingSend], channel_slots: int) -> set[int]:
    """Return the ids of the channels with ``channel_slots`` or more sends running."""
    counts = Counter(pending.channel_id for pending in running)
    return {channel_id for channel_id, count in counts.items() if count >= channel_slots}


def can_look_up_sends(kind: str, settings: Mapping[str, Any]) -> bool:
    """Return whether the provider of a channel can be asked whether an attempt created a message.

    Only Twilio can. Meta's Cloud API and SMTP have no such lookup, so their ambiguous
    failures are retried as before, and their abandoned attempts fail with an unknown outcome.
    """
    return kind == "whatsapp" and settings.get("provider") != "meta"


def _sentence(text: str) -> str:
    """Return ``text`` ending in a full stop, for a log line that goes on after it."""
    text = text.rstrip()
    return text if text.endswith((".", "!", "?")) else text + "."


def mailbox_lease_key(channel_id: int, folder: str) -> int:
    """Return the advisory lock key of one folder of an email channel.

    The key is a 64-bit BLAKE2b hash of the channel id and folder name, moved into
    [2**62, 2**63) so that it stays above the scheduler's and the event lock's small
    constants. Two folders that shared a key would leave one of them unread. For two
    given names the chance of that is about 2**-62 (estimated for a uniform hash). With
    CRC-32, names such as "plumless" and "buckeroo" collide.
    """
    digest = hashlib.blake2b(f"{channel_id}\0{folder}".encode("utf-8"), digest_size=8).digest()
    return (1 << 62) | (int.from_bytes(digest, "big") >> 2)


class MailboxReader:
    """Imports one folder of an email channel: fetch after the checkpoint, ingest, advance.

    IDLE reports on one selected folder per connection, so each folder a channel reads
    gets its own reader, connection and IDLE: mail in any folder arrives within seconds,
    and a folder that fails (deleted, renamed) leaves the others running. The cost is one
    IMAP connection per folder, which counts against the server's limit per account
    (Dovecot 2.3 allows 10 per user and client address by default).
    """

    # A batch of this many mails or more is parsed in a worker process, overlapping with
    # storing the batch before it. A smaller one, such as new mail that IDLE reported, is
    # parsed in the reader, because the round trip to the process would only add latency.
    PARSE_IN_WORKER_FROM = 8
    _parser: ParserProcess | None = None
    _parser_started: Future[list[InboundMessage | str]] | None = None
    _parser_lock = threading.Lock()
    _parser_unavailable = False

    def __init__(self, state: Switchboard, channel_id: int, stop: threading.Event, folder: str | None = None):
        self.state = state
        self.channel_id = channel_id
        self.stop = stop
        # None reads the channel's first folder.
        self.folder = folder
        self._lease: AdvisoryLock | None = None
        self._standing_by = False
        # The settings of the last connection attempt, which a backoff compares with the stored ones.
        self._attempt_settings: dict[str, Any] | None = None

    def run(self) -> None:
        backoff = RECONNECT_BACKOFF_START
        while not self.stop.is_set():
            try:
                self.read_until_stopped()
                return
            except (ChannelError, OSError) as error:
                log.warning(
                    "mailbox channel %s folder %r: %s Reconnecting in %.0f s.",
                    self.channel_id, self.folder, _sentence(str(error)), backoff,
                )
                self._record_error(error)
                if self._wait_unless_settings_change(backoff):
                    backoff = RECONNECT_BACKOFF_START
                else:
                    backoff = min(backoff * 2, RECONNECT_BACKOFF_MAX)
            except (OperationalError, InterfaceError) as error:
                # The database is unreachable, so the error cannot be stored either.
                log.warning(
                    "mailbox channel %s folder %r: database unavailable; retrying in %.0f s: %s",
                    self.channel_id, self.folder, backoff, error,
                )
                self.stop.wait(backoff)
                backoff = min(backoff * 2, RECONNECT_BACKOFF_MAX)
            except Exception as error:
                log.exception("mailbox channel %s folder %r: reader crashed; restarting", self.channel_id, self.folder)
                try:
                    with self.state.session_factory() as session:
                        record_channel_error(session, self.channel_id, f"Internal error: {error}")
                except (OperationalError, InterfaceError) as failure:
                    log.error("mailbox channel %s folder %r: could not store the error: %s",
                              self.channel_id, self.folder, failure)
                self.stop.wait(backoff)
                backoff = min(backoff * 2, RECONNECT_BACKOFF_MAX)

    def _wait_unless_settings_change(self, seconds: float) -> bool:
        """Wait ``seconds`` before reconnecting, and return True early when the channel's
        settings change meanwhile, as when an admin corrects a password after a failed login.

        The settings are read every ``SETTINGS_CHECK_SECONDS``. Without this, a fix made
        while the backoff had grown to minutes waited for the rest of it. They are compared
        with those of the failed attempt, so a fix made before the wait began counts too.
        """
        before = self._attempt_settings if self._attempt_settings is not None else self._settings()
        deadline = time.monotonic() + seconds
        while not self.stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.stop.wait(min(remaining, SETTINGS_CHECK_SECONDS)):
                return False
            now = self._settings()
            if before is not None and now is not None and now != before:
                log.info("mailbox channel %s folder %r: settings changed; reconnecting now", self.channel_id, self.folder)
                return True
        return False

    def _settings(self) -> dict[str, Any] | None:
        """Return the channel's settings, or None when the database cannot be read."""
        try:
            with self.state.session_factory() as session:
                return session.scalar(select(Channel.settings).where(Channel.id == self.channel_id))
        except (OperationalError, InterfaceError) as error:
            log.warning("mailbox channel %s: could not read its settings: %s", self.channel_id, error)
            return None

    def _record_error(self, error: Exception) -> None:
        """Store a reader error on the folder, and on the channel unless only this folder failed.

        A database that cannot store it is logged, so the reader still retries its mailbox.
        """
        try:
            with self.state.session_factory() as session:
                if self.folder is not None:
                    record_folder_error(session, self.channel_id, self.folder, str(error))
                if not isinstance(error, FolderError):
                    record_channel_error(session, self.channel_id, str(error))
        except (OperationalError, InterfaceError) as failure:
            log.error("mailbox channel %s folder %r: could not store the error: %s", self.channel_id, self.folder, failure)

    def _channel(self) -> Channel | None:
        with self.state.session_factory() as session:
            channel = session.get(Channel, self.channel_id)
            if channel is not None:
                session.expunge(channel)
            return channel

    def read_until_stopped(self) -> None:
        """Read the folder until the stop flag is set, or the channel is disabled or stops reading it.

        A change of the channel's IMAP settings closes the connection and opens one with the new settings.
        On PostgreSQL the reader reads only while it holds the folder's lease (see ``_hold_lease``).
        """
        try:
            while not self.stop.is_set():
                channel = self._channel()
                if channel is None or not channel.is_active:
                    return
                if self.folder is None:
                    self.folder = email_folders(channel.settings)[0]
                if self.folder not in email_folders(channel.settings):
                    log.info("mailbox channel %s no longer reads folder %r; its reader stops", self.channel_id, self.folder)
                    return
                if not self._hold_lease():
                    self.stop.wait(MAILBOX_LEASE_RETRY_SECONDS)
                    continue
                self._attempt_settings = dict(channel.settings or {})
                self._read_connected(channel)
        finally:
            if self._lease is not None:
                self._lease.dispose()
                self._lease = None

    def _hold_lease(self) -> bool:
        """Return whether this reader may read its folder now.

        Several worker processes each start a reader for every folder. On PostgreSQL only
        the one holding the folder's advisory lock reads it; the others wait and take over
        when its process ends. SQLite serves one process, whose reader needs no lease.
        """
        if self.state.engine.dialect.name != "postgresql":
            return True
        if self._lease is None:
            self._lease = AdvisoryLock(
                self.state.engine, mailbox_lease_key(self.channel_id, self.folder),
                f"mailbox channel {self.channel_id} folder {self.folder!r} lease",
            )
        if self._lease.held:
            return self._lease.still_held()
        if self._lease.try_acquire():
            log.info("mailbox channel %s folder %r: this process reads it", self.channel_id, self.folder)
            self._standing_by = False
            return True
        if not self._standing_by:
            log.info("mailbox channel %s folder %r: another process reads it; standing by",
                     self.channel_id, self.folder)
        self._standing_by = True
        return False

    def _read_connected(self, channel: Channel) -> None:
        settings = self._imap_settings(channel)
        with ImapReader(settings) as reader:
            idle = reader.supports_idle
            log.info(
                "mailbox channel %s connected to %s:%s folder %r (IDLE %s)",
                self.channel_id, settings.host, settings.port, settings.folder,
                "supported" if idle else "not supported, polling",
            )
            self._read_while_unchanged(reader, settings, idle)

    def _imap_settings(self, channel: Channel) -> ImapSettings:
        tokens = channel_tokens(self.state.session_factory, channel.id, channel.settings)
        return imap_settings(channel, tokens, folder=self.folder)

    def _read_while_unchanged(self, reader: ImapReader, settings: ImapSettings, idle: bool) -> None:
        """Import and wait for new mail until stopped or until the channel's settings for this folder change."""
        while not self.stop.is_set():
            current = self._channel()
            if current is None or not current.is_active:
                log.info("mailbox channel %s disabled or removed; reader of %r stops", self.channel_id, self.folder)
                return
            if self.folder not in email_folders(current.settings) or not _same_connection(
                self._imap_settings(current), settings
            ):
                log.info("mailbox channel %s settings changed; reader of %r reconnects", self.channel_id, self.folder)
                return
            if self._lease is not None and not self._lease.still_held():
                log.warning("mailbox channel %s folder %r: lease lost; standing by", self.channel_id, self.folder)
                return
            self.import_new(reader, settings.folder)
            if idle:
                reader.wait_for_changes(IDLE_SLICE_SECONDS, self.stop)
            elif not reader.wait_for_changes(0):
                # Without IDLE, wait_for_changes sends one NOOP and returns, so the pause is ours.
                self.stop.wait(self.state.config.imap_poll_interval)

    def import_new(self, reader: ImapReader, folder: str) -> int:
        """Import every mail of ``folder`` after its checkpoint, then record the folder as read through.

        ``reader`` must have ``folder`` open. Returns how many new messages were stored.
        Large batches are parsed in a worker process while the batch before is stored.
        A stop request ends a long import once the batches fetched so far are stored, so
        the process exits promptly. The next reader goes on from the checkpoint.
        """
        with self.state.session_factory() as session:
            uidvalidity, last_uid = load_checkpoint(session, self.channel_id, folder)
            stored = 0
            # In a large import, a thread fetches the next batch while this one is stored
            # (SQLite releases the interpreter lock while it writes), and the parser process
            # parses it meanwhile.
            waiting: tuple[list[FetchedMail], Future[list[InboundMessage | str]] | None] | None = None
            batches = _fetched_ahead(
                reader, Checkpoint(uidvalidity, last_uid), f"imap-fetch-{self.channel_id}", self.PARSE_IN_WORKER_FROM
            )
            checkpoint = _CheckpointWriter(session, self.channel_id, folder)
            try:
                while not self.stop.is_set():
                    try:
                        batch = next(batches, None)
                    except Exception:
                        # The connection failed: what was fetched before still gets stored.
                        if waiting is not None:
                            self._store_fetched(session, folder, *waiting, checkpoint)
                        raise
                    if batch is None:
                        break
                    parsing = self._start_parsing(batch)
                    if waiting is not None:
                        stored += self._store_fetched(session, folder, *waiting, checkpoint)
                    waiting = (batch, parsing)
                if waiting is not None:
                    stored += self._store_fetched(session, folder, *waiting, checkpoint)
            finally:
                batches.close()
                checkpoint.save()
            if not self.stop.is_set():
                record_folder_synced(session, self.channel_id, folder)
            return stored

    def _store_fetched(
        self,
        session: Session,
        folder: str,
        batch: list[FetchedMail],
        parsing: Future[list[InboundMessage | str]] | None,
        checkpoint: _CheckpointWriter,
    ) -> int:
        stored = self._import_batch(session, folder, batch, self._parsed(batch, parsing))
        # Only now is everything up to this UID committed.
        checkpoint.advance(batch[-1])
        return stored

    @classmethod
    def _start_parsing(cls, batch: list[FetchedMail]) -> Future[list[InboundMessage | str]] | None:
        """Hand a large batch to the parser process and return its future, or None to parse here.

        The readers of this process share one parser process, which starts on the first large
        batch. Until it is ready, batches are parsed here.
        """
        if len(batch) < cls.PARSE_IN_WORKER_FROM or cls._parser_unavailable:
            return None
        with cls._parser_lock:
            if cls._parser is None:
                # A new interpreter, not a fork: a forked child would keep copies of every
                # socket and pipe of this process open (client connections, subprocess
                # pipes), so their peers would never see them close. It imports only the
                # parser (in under half a second on the benchmark machine), and until then
                # batches are parsed in the reader.
                try:
                    cls._parser = ParserProcess()
                    cls._parser_started = cls._parser.submit([])
                except (ParserStopped, OSError) as error:
                    log.warning("could not start the mail parser process (%s), so the readers parse mail", error)
                    cls._parser_unavailable = True
                return None
            if cls._parser_started is None or not cls._parser_started.done():
                return None
            if cls._parser_started.exception() is not None:
                # A child that fails before its first reply, e.g. on an import, would fail again.
                log.warning("the mail parser process failed to start (%s), so the readers parse mail",
                            cls._parser_started.exception())
                cls._discard_parser()
                cls._parser_unavailable = True
                return None
            try:
                return cls._parser.submit([mail.raw for mail in batch])
            except ParserStopped:
                cls._discard_parser()
                return None

    @classmethod
    def _parsed(
        cls, batch: list[FetchedMail], parsing: Future[list[InboundMessage | str]] | None
    ) -> list[InboundMessage | str]:
        """Return the parse of each mail of ``batch``: the message, or the ``ParseError``'s text.

        When the parser process fails, the batch is parsed here instead.
        """
        if parsing is not None:
            try:
                return parsing.result()
            except ParserStopped:
                # The process died (killed, out of memory): the next large batch starts a new one.
                log.warning("the mail parser process stopped; parsing this batch in the reader")
                with cls._parser_lock:
                    cls._discard_parser()
            except Exception:
                log.exception("the mail parser process failed on a batch; parsing it in the reader")
        return parse_emails([mail.raw for mail in batch])

    @classmethod
    def _discard_parser(cls) -> None:
        if cls._parser is not None:
            cls._parser.close()
        cls._parser = None
        cls._parser_started = None

    def _import_batch(
        self, session: Session, folder: str, batch: list[FetchedMail], parsed: list[InboundMessage | str]
    ) -> int:
        """Store one fetched batch in one transaction. A mail that fails to parse or store is
        kept as a failed payload; only a database error (which retries the batch later)
        propagates."""
        ready = []
        for mail, inbound in zip(batch, parsed):
            if isinstance(inbound, str):
                self._keep_failed(session, folder, mail.uid, mail.raw, inbound)
                continue
            if mail.truncated:
                inbound = _oversize_stub(inbound, mail.size)
                log.warning(
                    "mailbox channel %s folder %r UID %s is %s bytes: imported its header only",
                    self.channel_id, folder, mail.uid, mail.size,
                )
            ready.append((mail.uid, inbound))
        if not ready:
            return 0

        with session.begin():
            results = ingest_batch(session, self.channel_id, [inbound for _, inbound in ready])
        for (uid, _), result in zip(ready, results):
            if result.error:
                log.warning(
                    "mailbox channel %s folder %r UID %s kept as a failed payload: %s",
                    self.channel_id, folder, uid, result.error,
                )
        return sum(1 for result in results if result.message_id is not None)

    def _keep_failed(self, session: Session, folder: str, uid: int, raw: bytes, error: str) -> None:
        payload_id = record_failed_payload(session, self.channel_id, raw, "rfc822", error)
        log.warning(
            "mailbox channel %s folder %r UID %s kept as failed payload %s: %s",
            self.channel_id, folder, uid, payload_id, error,
        )


_FETCH_DONE = object()


class _CheckpointWriter:
    """The checkpoint writer of one import, which saves at most every ``CHECKPOINT_INTERVAL_SECONDS``.

    ``advance`` takes the last mail of each committed batch, and ``save`` writes the
    newest one that is not saved yet, so an import ends with its whole progress saved.
    """

    def __init__(self, session: Session, channel_id: int, folder: str) -> None:
        self._session = session
        self._channel_id = channel_id
        self._folder = folder
        self._unsaved: FetchedMail | None = None
        self._saved_at = time.monotonic()

    def advance(self, last: FetchedMail) -> None:
        """Record that every mail up to ``last`` is committed, and save when the last save is old enough."""
        self._unsaved = last
        if time.monotonic() - self._saved_at >= CHECKPOINT_INTERVAL_SECONDS:
            self.save()

    def save(self) -> None:
        if self._unsaved is not None:
            last = self._unsaved
            save_checkpoint(self._session, self._channel_id, self._folder, last.uidvalidity, last.uid)
            self._unsaved = None
        self._saved_at = time.monotonic()


def _fetched_ahead(
    reader: ImapReader, checkpoint: Checkpoint, name: str, ahead_from: int
) -> Iterator[list[FetchedMail]]:
    """Yield the batches of ``reader.fetch_new``, after the first one fetched by a thread one batch ahead.

    Only a first batch of ``ahead_from`` mails or more starts the thread, so an empty poll
    or the mail of one IDLE wake-up is fetched here. The thread has the connection to itself
    until the last batch or an error, which is raised here. Closing the generator early
    stops the thread after the batch it is fetching, so the connection is idle again when
    this returns.
    """
    batches = reader.fetch_new(checkpoint)
    first = next(batches, None)
    if first is None:
        return
    yield first
    if len(first) < ahead_from:
        yield from batches
        return

    handoff: queue.Queue[Any] = queue.Queue(maxsize=1)
    closed = threading.Event()

    def hand_over(item: Any) -> bool:
        while not closed.is_set():
            try:
                handoff.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def fetch() -> None:
        try:
            for batch in batches:
                if not hand_over(batch):
                    return
        except BaseException as error:  # noqa: BLE001 - raised again in the importing thread
            hand_over(error)
            return
        hand_over(_FETCH_DONE)

    thread = threading.Thread(target=fetch, name=name, daemon=True)
    thread.start()
    try:
        while True:
            item = handoff.get()
            if item is _FETCH_DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        closed.set()
        thread.join()


def _same_connection(first: ImapSettings, second: ImapSettings) -> bool:
    """Return whether two reader settings open the same connection.

    Each OAuth 2.0 token source is a new object that hands out the channel's stored token,
    so only whether one is used counts, and a refreshed token needs no reconnect.
    """
    without_tokens = dataclasses.replace(first, oauth2_tokens=None) == dataclasses.replace(second, oauth2_tokens=None)
    return without_tokens and (first.oauth2_tokens is None) == (second.oauth2_tokens is None)


def _oversize_stub(inbound: InboundMessage, size: int) -> InboundMessage:
    """Return the header-only import of a message too large to fetch, with a note for agents."""
    note = (
        f"This message is {size / 1_000_000:.1f} MB, larger than this mailbox's import limit, so "
        "only its sender and subject were imported. Open it in the mailbox itself to read it."
    )
    return dataclasses.replace(inbound, text=note, html=None, attachments=[], visible_text=None)


class Workers:
    """Starts and stops the background work of one process."""

    def __init__(self, state: Switchboard):
        self.state = state
        self.stop_event = threading.Event()
        self.threads: dict[str, threading.Thread] = {}
        self.scheduler = BackgroundScheduler(
            timezone="UTC",
            executors={"default": SchedulerThreadPool(4)},
            # One catch-up run after downtime, never a burst of missed runs.
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 60},
        )
        self.dispatcher = OutboxDispatcher(state, self.stop_event)
        self.media_fetcher = MediaFetcher(state, self.stop_event)
        self.webhook_worker = WebhookWorker(state, self.stop_event)
        # Proactive updates: a scheduler of its own, with a persistent job store and a leader.
        self.proactive = ProactiveScheduler(state, self.stop_event) if state.config.proactive_enabled else None

    def _start_thread(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        self.threads[name] = thread
        thread.start()

    def refresh_mailboxes(self) -> None:
        """Start a reader for each folder of each active email channel that has none.

        This picks up channels and folders added since the last refresh. A reader whose
        folder was removed from its channel stops by itself.
        """
        with self.state.session_factory() as session:
            channels = session.execute(
                select(Channel.id, Channel.settings).where(Channel.kind == "email", Channel.is_active.is_(True))
            ).all()
        for channel_id, settings in channels:
            for folder in email_folders(settings):
                name = f"imap-{channel_id}-{folder}"
                if name in self.threads and self.threads[name].is_alive():
                    continue
                reader = MailboxReader(self.state, channel_id, self.stop_event, folder)
                self._start_thread(name, reader.run)

    def wake_snoozed(self) -> None:
        """Open the snoozed conversations whose time has come (a scheduler job)."""
        with self.state.session_factory() as session:
            wake_snoozed_conversations(session, utcnow())

    def start(self) -> None:
        self._start_thread("outbox", self.dispatcher.run)
        self._start_thread("media", self.media_fetcher.run)
        self._start_thread("webhooks", self.webhook_worker.run)
        self.refresh_mailboxes()
        self.scheduler.add_job(
            self.refresh_mailboxes, "interval", seconds=CHANNEL_REFRESH_SECONDS, id="refresh_mailboxes",
            replace_existing=True,
        )
        self.scheduler.add_job(
            self.wake_snoozed, "interval", seconds=SNOOZE_WAKE_SECONDS, id="wake_snoozed", replace_existing=True,
        )
        self.scheduler.start()
        if self.proactive is not None:
            self.proactive.start()
        log.info("workers started")

    def stop(self, timeout: float = 10.0) -> None:
        self.stop_event.set()
        self.state.outbox_wakeup.set()
        self.state.media_wakeup.set()
        self.webhook_worker.wakeup.set()
        self.scheduler.shutdown(wait=False)
        if self.proactive is not None:
            self.proactive.stop(timeout)
        for thread in self.threads.values():
            thread.join(timeout)
        log.info("workers stopped")
