"""Send agent replies as email over SMTP.

``build_mime`` turns an ``OutboundMessage`` into a MIME message that threads in the
customer's mail client: it carries our Message-ID and the customer's In-Reply-To and
References. ``send_email`` submits it and sorts failures into transient ones (network,
timeouts, SMTP 4xx), which the outbox retries, and permanent ones (rejected login,
SMTP 5xx, a message that cannot be built), which it reports to the agent.

A reply with files is a multipart/mixed message: the text (and HTML) body first, then one
part per file with its Content-Type and a Content-Disposition whose filename is encoded by
RFC 2231 when it is not ASCII. The inbox calls ``check_attachments`` before it accepts
such a reply.

Once the server has accepted the DATA, it has taken responsibility for the mail, so an
error reply to the QUIT that follows (or a connection dropped then) still counts as sent.
"""

from __future__ import annotations

import base64
import email.policy
import logging
import mimetypes
import re
import secrets
import smtplib
import ssl
from dataclasses import dataclass
from datetime import datetime, timezone
from email.headerregistry import Address as MimeAddress
from email.message import EmailMessage

from channels.email.oauth import AccessTokenSource, OAuthError, sign_in_with_token, xoauth2_response
from channels.email.parse import strip_brackets
from channels.errors import PermanentSendError, SendError, TransientSendError, describe_network_error
from channels.types import AddressKind, Attachment, DeliveryState, OutboundMessage, SendResult

logger = logging.getLogger(__name__)

SECURITY_MODES = ("starttls", "ssl", "none")

# Header lines are set raw and not refolded, because the stdlib folds a Message-ID
# longer than a line into an RFC 2047 encoded word, which breaks threading.
_POLICY = email.policy.SMTP.clone(cte_type="7bit", refold_source="none")
# Printable ASCII without brackets or spaces: safe to write into a raw header.
_MESSAGE_ID = re.compile(r"^[\x21-\x3b\x3d\x3f-\x7e]+@[\x21-\x3b\x3d\x3f-\x7e]+$")
# A MIME type and subtype (RFC 2045 tokens), without parameters.
_MEDIA_TYPE = re.compile(r"^[a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+$")
# Control characters and path separators never belong in an attachment's file name.
_UNSAFE_FILENAME = re.compile(r"[\x00-\x1f\x7f/\\]")

# The maximum number of files in one email reply, the same as WhatsApp's maximum of parts.
MAX_ATTACHMENTS = 10
# The maximum total size of the files in one email reply, in bytes. Base64 makes them about
# 37% larger on the wire, so 15 MiB of files makes a mail of about 21 MB, below the 25 MB
# that large mail providers commonly accept.
# NOTE: some servers accept less (Postfix's default message_size_limit is 10,240,000 bytes).
# Their 552 reply fails the send, and the inbox shows the server's reason on the reply.
MAX_ATTACHMENT_BYTES = 15 * 1024 * 1024


@dataclass(frozen=True)
class SmtpSettings:
    """How to reach the SMTP submission server and whom replies come from.

    ``security`` is ``"starttls"`` (upgrade a plain connection, usually port 587),
    ``"ssl"`` (TLS from the start, usually port 465) or ``"none"``. ``timeout`` is in
    seconds, per network operation. With ``oauth2_tokens`` the sender signs in as
    ``username`` with AUTH XOAUTH2 and ignores ``password``.
    """

    host: str
    port: int
    username: str | None = None
    password: str | None = None
    security: str = "starttls"
    from_address: str = ""
    from_name: str | None = None
    timeout: float = 30
    oauth2_tokens: AccessTokenSource | None = None

    def __post_init__(self) -> None:
        if self.security not in SECURITY_MODES:
            raise ValueError(
                f"invalid SMTP security {self.security!r}: use one of {', '.join(SECURITY_MODES)}"
            )


@dataclass
class UnreadableAttachment(Attachment):
    """An attachment whose stored bytes could not be read. ``build_mime`` rejects it with ``reason``."""

    reason: str = ""


def check_attachments(files: list[tuple[str, int]]) -> None:
    """Check that files of these (file name, size in bytes) can go out with one email reply.

    Raises ``ValueError`` with a message for the agent: more than ``MAX_ATTACHMENTS`` files,
    an empty file, or more than ``MAX_ATTACHMENT_BYTES`` in all.
    """
    if len(files) > MAX_ATTACHMENTS:
        raise ValueError(
            f"The reply has {len(files)} files, but an email reply takes at most {MAX_ATTACHMENTS}. "
            "Send the rest in another reply."
        )
    for filename, size in files:
        if size == 0:
            raise ValueError(f"{filename!r} is empty. Choose the file again, or remove it.")
    total = sum(size for _, size in files)
    if total > MAX_ATTACHMENT_BYTES:
        raise ValueError(
            f"The files add up to {total / 1048576:.1f} MB, but an email reply takes at most "
            f"{MAX_ATTACHMENT_BYTES / 1048576:.0f} MB of files. Send them in several replies."
        )


def make_message_id(domain: str) -> str:
    """Return a new globally unique Message-ID for ``domain``, without angle brackets.

    Raises ``ValueError`` when ``domain`` is empty or contains characters that cannot
    appear in a Message-ID.
    """
    message_id = f"sb.{secrets.token_hex(16)}@{domain}"
    if not domain or not _MESSAGE_ID.match(message_id):
        raise ValueError(f"invalid Message-ID domain {domain!r}")
    return message_id


def build_mime(message: OutboundMessage, settings: SmtpSettings) -> EmailMessage:
    """Build the MIME message for an outbound email.

    The From header uses ``settings.from_address`` (with ``from_name``), or
    ``message.sender`` when no from address is configured. Inline attachments with a
    content id go into a multipart/related next to the HTML body, and other attachments
    make the message multipart/mixed. Raises ``ValueError`` when the Message-ID or a
    sender is missing, an address or header value is invalid (for example, it contains CR
    or LF), the recipient is not an email address, or an attachment is unreadable.
    """
    if not message.message_id:
        raise ValueError("missing message_id: assign one with make_message_id() first")
    message_id = strip_brackets(message.message_id)
    if not _MESSAGE_ID.match(message_id):
        raise ValueError(f"invalid message_id {message.message_id!r}")
    if message.to.kind is not AddressKind.EMAIL:
        raise ValueError(f"recipient is a {message.to.kind.value} address, not an email address")

    mime = EmailMessage(policy=_POLICY)
    _set_header(mime, "From", _from_address(message, settings))
    _set_header(mime, "To", _mime_address("To", message.to.display_name, message.to.value))
    if message.reply_to:
        _set_header(mime, "Reply-To", message.reply_to)
    if message.subject is not None:
        _set_header(mime, "Subject", message.subject)
    mime["Date"] = datetime.now(timezone.utc)
    mime["Message-ID"] = f"<{message_id}>"

    in_reply_to = _valid_ids([message.in_reply_to] if message.in_reply_to else [])
    if in_reply_to:
        mime.set_raw("In-Reply-To", f"<{in_reply_to[0]}>")
    references = _valid_ids(message.references)
    if references:
        # One id per folded line keeps every line short without refolding.
        mime.set_raw("References", "\n ".join(f"<{item}>" for item in references))

    mime.set_content(message.text)
    if message.html is not None:
        mime.add_alternative(message.html, subtype="html")
    html_part = mime.get_body(preferencelist=("html",)) if message.html is not None else None
    for attachment in message.attachments:
        if isinstance(attachment, UnreadableAttachment):
            raise ValueError(f"the attachment {attachment.filename!r} cannot be read: {attachment.reason}")
        filename = safe_filename(attachment.filename)
        maintype, subtype = attachment_type(attachment.content_type, filename)
        if html_part is not None and attachment.inline and attachment.content_id:
            html_part.add_related(
                attachment.data, maintype, subtype, cid=f"<{attachment.content_id}>",
                filename=filename, disposition="inline",
            )
        else:
            # The name parameter of Content-Type is for clients that ignore the disposition.
            mime.add_attachment(
                attachment.data, maintype, subtype, filename=filename,
                disposition="inline" if attachment.inline else "attachment",
                params={"name": filename},
            )
    return mime


def safe_filename(filename: str) -> str:
    """Return ``filename`` without control characters or path separators, or "attachment"."""
    cleaned = _UNSAFE_FILENAME.sub("_", filename).strip()
    return cleaned[:255] or "attachment"


def attachment_type(content_type: str, filename: str) -> tuple[str, str]:
    """Return the (maintype, subtype) to label an attachment with.

    Parameters of ``content_type`` are dropped. An invalid or generic type is guessed from the
    file name, and application/octet-stream is the fallback. Multipart and message types
    become application/octet-stream, because their parts may not be base64-encoded
    (RFC 2046, section 5), and a file's bytes are sent base64-encoded.
    """
    media_type = content_type.split(";", 1)[0].strip().lower()
    if not _MEDIA_TYPE.match(media_type) or media_type == "application/octet-stream":
        media_type = mimetypes.guess_type(filename, strict=False)[0] or "application/octet-stream"
    maintype, _, subtype = media_type.partition("/")
    if maintype in ("multipart", "message"):
        return "application", "octet-stream"
    return maintype, subtype


def prepare_email(message: OutboundMessage, settings: SmtpSettings) -> EmailMessage:
    """Return ``build_mime(message, settings)``, raising ``PermanentSendError`` where it raises ``ValueError``."""
    try:
        return build_mime(message, settings)
    except ValueError as error:
        raise PermanentSendError(f"cannot build the email: {error}") from error


def send_email(
    settings: SmtpSettings, message: OutboundMessage, mime: EmailMessage | None = None
) -> SendResult:
    """Submit one message to the SMTP server.

    ``mime`` is what ``prepare_email`` returned for ``message``. A caller passes it to keep
    the exact bytes sent, for a copy in a Sent folder. Without it the message is built
    here. Returns a ``SendResult`` with the message's Message-ID (without brackets) and
    state ``SENT``. Raises ``TransientSendError`` for network errors, timeouts and SMTP
    4xx replies, and ``PermanentSendError`` for a rejected login, SMTP 5xx replies, a
    server lacking STARTTLS or AUTH, and a message that ``build_mime`` rejects.
    """
    if mime is None:
        mime = prepare_email(message, settings)
    envelope_from = settings.from_address or (message.sender.value if message.sender else "")
    message_id = strip_brackets(message.message_id or "")
    connection: smtplib.SMTP | None = None
    try:
        connection = _open_connection(settings)
        # NOTE: when the reply to DATA never arrives (a timeout), the server may have taken
        # the mail anyway, and the retry of this transient error can deliver it twice.
        connection.send_message(mime, from_addr=envelope_from, to_addrs=[message.to.value])
    except (smtplib.SMTPException, OSError) as error:
        if connection is not None and not _server_replied(error):
            # The connection is broken or timed out, so a QUIT would only wait for the timeout.
            connection.close()
            connection = None
        raise _classify(error, settings) from error
    finally:
        if connection is not None:
            _quit(connection, settings)
    logger.info("SMTP accepted message %s via %s:%s", message_id, settings.host, settings.port)
    return SendResult(provider_message_id=message_id, status=DeliveryState.SENT)


def _quit(connection: smtplib.SMTP, settings: SmtpSettings) -> None:
    """End the SMTP session and close the socket. An SMTP or socket error here is only logged.

    After a successful DATA the server already took the mail, and after a failed one the
    caller reports that error, so the reply to QUIT changes neither outcome.
    """
    try:
        # smtplib's quit() returns the reply instead of raising on a code other than 221.
        code, reply = connection.quit()
    except (smtplib.SMTPException, OSError) as error:
        logger.debug("SMTP QUIT to %s:%s failed: %s", settings.host, settings.port, error)
        connection.close()
        return
    if code != 221:
        logger.debug(
            "SMTP server %s:%s replied %s %s to QUIT",
            settings.host, settings.port, code, _reply_text(reply),
        )


def _from_address(message: OutboundMessage, settings: SmtpSettings) -> MimeAddress:
    if settings.from_address:
        return _mime_address("From", settings.from_name, settings.from_address)
    if message.sender is not None and message.sender.kind is AddressKind.EMAIL:
        return _mime_address("From", message.sender.display_name, message.sender.value)
    raise ValueError("missing sender: set SmtpSettings.from_address or OutboundMessage.sender")


def _mime_address(header: str, display_name: str | None, addr_spec: str) -> MimeAddress:
    """Return the address for ``header``. Raises ``ValueError`` naming the header."""
    try:
        return MimeAddress(display_name or "", addr_spec=addr_spec)
    except ValueError as error:  # also email.errors defects, which subclass ValueError
        raise ValueError(f"invalid {header} address: {error}") from error


def _set_header(mime: EmailMessage, name: str, value: str | MimeAddress) -> None:
    """Set a header. Raises ``ValueError`` naming the header, for example on CR or LF in it."""
    try:
        mime[name] = value
    except ValueError as error:
        raise ValueError(f"invalid {name} header: {error}") from error


def _valid_ids(values: list[str]) -> list[str]:
    """Return the bracket-stripped ids that are safe to write into a raw header."""
    result = []
    for value in values:
        item = strip_brackets(value)
        if _MESSAGE_ID.match(item):
            result.append(item)
        else:
            # Ids come from customer mail; one odd id must not block the reply.
            logger.warning("dropped invalid Message-ID %r from the reply headers", value[:200])
    return result


def _open_connection(settings: SmtpSettings) -> smtplib.SMTP:
    """Return a connected, secured and logged-in SMTP session."""
    context = ssl.create_default_context()
    connection: smtplib.SMTP
    if settings.security == "ssl":
        connection = smtplib.SMTP_SSL(
            settings.host, settings.port, timeout=settings.timeout, context=context
        )
    else:
        connection = smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout)
    try:
        if settings.security == "starttls":
            # starttls() raises SMTPNotSupportedError rather than send a password in clear.
            connection.starttls(context=context)
        if settings.username and settings.oauth2_tokens is not None:
            _sign_in_xoauth2(connection, settings, settings.oauth2_tokens)
        elif settings.username:
            connection.login(settings.username, settings.password or "")
    except BaseException:
        connection.close()
        raise
    return connection


def _sign_in_xoauth2(connection: smtplib.SMTP, settings: SmtpSettings, tokens: AccessTokenSource) -> None:
    """Sign in with AUTH XOAUTH2, retrying once with a new token after a rejection.

    Raises ``SMTPAuthenticationError`` when the server rejects both tokens, and
    ``TransientSendError`` when no access token can be obtained. A revoked grant needs a
    person to authorize the app again, and the retries give the reply a chance to go out
    once that is done.
    """
    connection.ehlo_or_helo_if_needed()
    if "XOAUTH2" not in connection.esmtp_features.get("auth", "").upper().split():
        raise smtplib.SMTPNotSupportedError("AUTH XOAUTH2 is not offered, so OAuth 2.0 sign-in is impossible")

    def authenticate(token: str) -> None:
        response = base64.b64encode(xoauth2_response(settings.username or "", token).encode()).decode("ascii")
        code, reply = connection.docmd("AUTH", f"XOAUTH2 {response}")
        if code == 334:
            # The server put its error in a challenge; an empty line ends the exchange.
            code, reply = connection.docmd("")
        if code != 235:
            raise smtplib.SMTPAuthenticationError(code, reply)

    try:
        sign_in_with_token(tokens, authenticate, smtplib.SMTPAuthenticationError)
    except OAuthError as error:
        where = f"{settings.host}:{settings.port}"
        raise TransientSendError(f"no access token for the SMTP sign-in to {where}: {error}") from error


def _server_replied(error: Exception) -> bool:
    """Return whether ``error`` comes from a server reply, so the session is still usable."""
    return isinstance(error, (smtplib.SMTPResponseException, smtplib.SMTPRecipientsRefused))


def _classify(error: Exception, settings: SmtpSettings) -> SendError:
    """Map an smtplib or socket error to a transient or permanent send error."""
    where = f"{settings.host}:{settings.port}"
    code: int | None = None
    text = str(error)
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        code, reply = next(iter(error.recipients.values()))
        text = _reply_text(reply)
    elif isinstance(error, smtplib.SMTPResponseException):
        code, text = error.smtp_code, _reply_text(error.smtp_error)

    if code is not None:
        message = f"SMTP server {where} replied {code} {text}"
        if isinstance(error, smtplib.SMTPAuthenticationError):
            message = f"SMTP login rejected by {where}: {code} {text}"
        # smtplib uses -1 for a broken reply; only a real 5xx is final.
        if 500 <= code < 600:
            return PermanentSendError(message, code=str(code))
        return TransientSendError(message, code=str(code))

    if isinstance(error, smtplib.SMTPNotSupportedError):
        return PermanentSendError(f"SMTP server {where} lacks a required extension: {text}")
    if isinstance(error, ssl.SSLCertVerificationError):
        return PermanentSendError(f"SMTP connection to {where} failed: {describe_network_error(error)}")
    if isinstance(error, OSError):
        text = describe_network_error(error)
    return TransientSendError(f"SMTP connection to {where} failed: {text or type(error).__name__}")


def _reply_text(reply: bytes | str) -> str:
    if isinstance(reply, bytes):
        return reply.decode("utf-8", errors="replace")
    return reply
