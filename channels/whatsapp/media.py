"""Download the media of an inbound WhatsApp message from Twilio.

Twilio's webhook carries ``MediaUrl<n>``, an address on Twilio's API host that needs the
account's credentials (HTTP basic auth) when the account enforces media authentication, and
that responds with a redirect to a short-lived URL on Twilio's media host. The credentials go
to the API host only: the redirect is followed without them. Right after the webhook the
media is sometimes not yet available and the API host answers 404 for a few seconds, so a
404 counts as transient (the caller retries with backoff).
"""

from __future__ import annotations

import mimetypes
import re
import time
from dataclasses import dataclass
from email.message import Message
from urllib.parse import urljoin, urlsplit

import requests
import urllib3

from channels.errors import ChannelError

TWILIO_API_BASE_URL = "https://api.twilio.com"
# Redirects followed after the API host's response (Twilio sends one).
MAX_REDIRECTS = 3
CHUNK_BYTES = 64 * 1024
# A whole download, well under the media fetcher's five-minute claim on the file.
DOWNLOAD_DEADLINE_SECONDS = 120.0

# The WhatsApp media types in Twilio's "Guidance on WhatsApp Media Messages" (images, audio,
# MP4 video, PDF and Office documents, vCards), plus plain text and the older Office types.
# Anything else is refused rather than stored.
ALLOWED_TYPES = frozenset({
    "image/jpeg", "image/png", "image/webp",
    "audio/aac", "audio/amr", "audio/3gpp", "audio/mpeg", "audio/mp4", "audio/ogg", "audio/opus",
    "video/mp4", "video/3gpp",
    "application/pdf", "text/plain", "text/vcard", "text/x-vcard",
    "application/msword", "application/vnd.ms-excel", "application/vnd.ms-powerpoint",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
})

# The file name extensions of each accepted type, the usual one first. A customer's file name
# keeps its extension only when it is one of its type's.
TYPE_EXTENSIONS: dict[str, tuple[str, ...]] = {
    "image/jpeg": (".jpg", ".jpeg", ".jpe"), "image/png": (".png",), "image/webp": (".webp",),
    "audio/aac": (".aac",), "audio/amr": (".amr",), "audio/3gpp": (".3gp", ".3gpp"),
    "audio/mpeg": (".mp3",), "audio/mp4": (".m4a", ".mp4"), "audio/ogg": (".ogg", ".oga", ".opus"),
    "audio/opus": (".opus", ".ogg"), "video/mp4": (".mp4", ".m4v"), "video/3gpp": (".3gp", ".3gpp"),
    "application/pdf": (".pdf",), "text/plain": (".txt", ".text"),
    "text/vcard": (".vcf", ".vcard"), "text/x-vcard": (".vcf", ".vcard"),
    "application/msword": (".doc",), "application/vnd.ms-excel": (".xls",),
    "application/vnd.ms-powerpoint": (".ppt", ".pps"),
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": (".docx",),
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": (".xlsx",),
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": (".pptx",),
}
_UNSAFE_FILENAME = re.compile(r"[^\w .()-]+")


class MediaError(ChannelError):
    """A failed media download. ``transient`` is True when a later attempt may succeed."""

    def __init__(self, message: str, *, transient: bool):
        super().__init__(message)
        self.transient = transient


@dataclass(frozen=True)
class DownloadedMedia:
    data: bytes
    content_type: str
    filename: str


def download_twilio_media(
    url: str,
    account_sid: str,
    auth_token: str,
    *,
    expected_type: str,
    max_bytes: int,
    filename_stem: str,
    api_base_url: str | None = None,
    timeout_seconds: float = 30.0,
) -> DownloadedMedia:
    """Download one media file. Raises ``MediaError`` (transient or not) on every failure.

    ``url`` must be on Twilio's API host (``api_base_url`` in tests), because that host alone
    receives the account's credentials. ``expected_type`` is the webhook's
    ``MediaContentType<n>``, used when the media host sends none.
    """
    api = urlsplit(api_base_url or TWILIO_API_BASE_URL)
    api_host = api.netloc
    # Same scheme too: credentials must never travel in clear text to an https API's host.
    if urlsplit(url).scheme != api.scheme or urlsplit(url).netloc != api_host:
        raise MediaError(f"The media URL is not on Twilio's API host {api_host}, so it was not downloaded.",
                         transient=False)

    with requests.Session() as session:
        response = _get(session, url, (account_sid, auth_token), timeout_seconds)
        for _ in range(MAX_REDIRECTS):
            if not response.is_redirect:
                break
            location = urljoin(response.url, response.headers.get("Location", ""))
            response.close()
            # The media host gets a signed URL and no credentials.
            response = _get(session, location, None, timeout_seconds)
        with response:
            _raise_for_status(response)
            content_type = _content_type(response.headers.get("Content-Type")) or _content_type(expected_type)
            if content_type not in ALLOWED_TYPES:
                raise MediaError(f"Files of type {content_type or 'unknown'} are not accepted.", transient=False)
            data = read_body(response, max_bytes)
            filename = _filename(response.headers.get("Content-Disposition"), filename_stem, content_type)
    return DownloadedMedia(data=data, content_type=content_type, filename=filename)


def _get(
    session: requests.Session, url: str, auth: tuple[str, str] | None, timeout: float
) -> requests.Response:
    try:
        return session.get(url, auth=auth, allow_redirects=False, stream=True, timeout=timeout)
    except requests.RequestException as error:
        raise MediaError(f"The download failed: {error}", transient=True) from error


def _raise_for_status(response: requests.Response) -> None:
    status = response.status_code
    if status == 200:
        return
    if status == 404:
        raise MediaError("Twilio responded 404: the media was not found.", transient=True)
    if status == 429 or status >= 500:
        raise MediaError(f"Twilio's media host responded {status}; the download will be retried.", transient=True)
    if status in (401, 403):
        raise MediaError(
            f"Twilio rejected the download ({status}): check the channel's Account SID and auth token.",
            transient=False,
        )
    if response.is_redirect:
        raise MediaError(f"The download was redirected more than {MAX_REDIRECTS} times.", transient=False)
    raise MediaError(f"Twilio's media host responded {status}.", transient=False)


def read_body(response: requests.Response, max_bytes: int) -> bytes:
    """Read and return the body of a response requested with ``stream=True``, within
    ``max_bytes`` and ``DOWNLOAD_DEADLINE_SECONDS``.

    Raises ``MediaError``: permanent for a body over ``max_bytes``, transient when the body
    broke off or was not complete by the deadline.
    """
    declared = response.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise MediaError(_too_large(int(declared), max_bytes), transient=False)
    # The request timeout bounds each read from the socket only. requests' iter_content
    # waits for a whole chunk, so a host sending a byte before each read timeout held the
    # fetcher for hours. read1 returns what one socket read brings, so the deadline is
    # checked after each read and is passed by one read timeout at most.
    deadline = time.monotonic() + DOWNLOAD_DEADLINE_SECONDS
    chunks = []
    received = 0
    try:
        while True:
            if time.monotonic() > deadline:
                raise MediaError("The download did not finish in time.", transient=True)
            chunk = response.raw.read1(CHUNK_BYTES, decode_content=True)
            if not chunk:
                break
            received += len(chunk)
            if received > max_bytes:
                raise MediaError(_too_large(received, max_bytes, at_least=True), transient=False)
            chunks.append(chunk)
    except (urllib3.exceptions.HTTPError, OSError) as error:
        raise MediaError(f"The download broke off: {error}", transient=True) from error
    return b"".join(chunks)


def _too_large(size: int, limit: int, *, at_least: bool = False) -> str:
    return (
        f"This file is {'more than ' if at_least else ''}{format_size(size)}, larger than this "
        f"channel's limit of {format_size(limit)} for attachments, so it was not stored."
    )


def format_size(size: int) -> str:
    """Return a byte count as people read it: 950 bytes, 48 kB, 12.5 MB (decimal units)."""
    if size < 1000:
        return f"{size} bytes"
    if size < 1_000_000:
        return f"{size / 1000:.0f} kB"
    return f"{size / 1_000_000:.1f} MB"


def _content_type(header: str | None) -> str:
    if not header:
        return ""
    message = Message()
    message["Content-Type"] = header
    return message.get_content_type() if "/" in header else ""


def _filename(disposition: str | None, stem: str, content_type: str) -> str:
    """Return the sender's file name when the media host gives one, else stem plus extension.

    The sender's name ends in an extension of ``content_type``: agents open the files they
    download by their name, and "invoice.pdf.exe" must not run as a program.
    """
    extensions = TYPE_EXTENSIONS.get(content_type) or (mimetypes.guess_extension(content_type) or "",)
    if disposition:
        message = Message()
        message["Content-Disposition"] = disposition
        given = message.get_filename()
        if given:
            cleaned = _UNSAFE_FILENAME.sub("_", given).strip(" .")[:200]
            if cleaned and not cleaned.lower().endswith(tuple(extensions)):
                cleaned += extensions[0]
            if cleaned:
                return cleaned
    return f"{stem}{extensions[0]}"
