"""The media fetcher: downloads provider-hosted media of inbound messages in the background."""

from __future__ import annotations

import logging
import threading

from channels.whatsapp import meta
from channels.whatsapp.media import MediaError, download_twilio_media
from gateway import Switchboard
from gateway.channel_settings import meta_settings
from inbox.ingest import DEFAULT_MAX_ATTACHMENT_BYTES
from inbox.media import PendingMedia, claim_next_media, record_media_failed, record_media_stored
from inbox.storage import attachment_store

log = logging.getLogger(__name__)


class MediaFetcher:
    """Downloads due media one file at a time: woken by webhooks that brought media, else polling."""

    def __init__(self, state: Switchboard, stop: threading.Event):
        self.state = state
        self.stop = stop

    def run(self) -> None:
        log.info("media fetcher started")
        while not self.stop.is_set():
            try:
                self.fetch_due()
            except Exception:
                log.exception("media fetch round failed")
            self.state.media_wakeup.wait(self.state.config.outbox_poll_interval)
            self.state.media_wakeup.clear()
        log.info("media fetcher stopped")

    def fetch_due(self) -> int:
        """Download due media until none is left or the fetcher stops. Returns how many were tried."""
        attempted = 0
        while not self.stop.is_set():
            with self.state.session_factory() as session:
                pending = claim_next_media(session)
            if pending is None:
                return attempted
            self.fetch(pending)
            attempted += 1
        return attempted

    def fetch(self, pending: PendingMedia) -> None:
        """Download one claimed file, store it and record the outcome."""
        settings = pending.channel_settings
        try:
            if settings.get("provider") == "meta":
                media = meta.fetch_media(
                    meta_settings(settings, self.state.config),
                    meta.media_id(pending.url) or "",
                    expected_type=pending.expected_type,
                    max_bytes=int(settings.get("max_attachment_bytes") or DEFAULT_MAX_ATTACHMENT_BYTES),
                    filename_stem=pending.filename_stem,
                )
            else:
                media = download_twilio_media(
                    pending.url,
                    settings.get("account_sid", ""),
                    settings.get("auth_token", ""),
                    expected_type=pending.expected_type,
                    max_bytes=int(settings.get("max_attachment_bytes") or DEFAULT_MAX_ATTACHMENT_BYTES),
                    filename_stem=pending.filename_stem,
                    api_base_url=self.state.config.twilio_api_base_url,
                )
        except MediaError as error:
            with self.state.session_factory() as session:
                record_media_failed(session, pending.attachment_id, str(error), transient=error.transient)
            return

        with self.state.session_factory() as session:
            key = attachment_store(session).put(media.data)
            record_media_stored(
                session, pending.attachment_id, storage_key=key, size=len(media.data),
                content_type=media.content_type, filename=media.filename,
            )
