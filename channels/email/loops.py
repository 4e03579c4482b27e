"""Recognise mail that a machine sent: auto-replies, out-of-office notes and bounces.

Such mail is stored like any other, but nothing may reply to it automatically, or two
robots would reply to each other for ever (RFC 3834). The signals, strongest first:

- A delivery status notification (RFC 3464): ``multipart/report; report-type=delivery-status``.
  Its ``message/delivery-status`` part names each recipient with an ``Action`` and a
  ``Status``; ``Action: failed`` or a 5.x.x status is a bounce. The returned
  ``message/rfc822`` or ``text/rfc822-headers`` part carries the Message-ID of the mail
  that bounced. A report without a failure (``delayed``, ``relayed``) is only automatic.
- ``Auto-Submitted`` with any value but ``no`` (RFC 3834), ``Precedence: bulk``, ``junk``,
  ``list`` or ``auto_reply``, and the ``X-Autoreply`` and ``X-Autorespond`` headers.
- ``X-Auto-Response-Suppress`` with ``All``, ``OOF`` or ``AutoReply``, Microsoft's way of
  asking not to be auto-answered, which Exchange also puts on its own auto-replies.
- An empty return path (``Return-Path: <>``), which RFC 5321 reserves for notifications.
- A sender named MAILER-DAEMON or postmaster. Such a mail counts as a bounce only when it
  also returns a message or has a bounce-like subject, because people write from postmaster
  too; otherwise it counts as automatic.

Nothing here decides what a bounce changes. ``classify`` only reads the message.
"""

from __future__ import annotations

import email.parser
import email.policy
import email.utils
import enum
import logging
import re
from dataclasses import dataclass, field
from email.message import Message

from channels.types import Bounce

logger = logging.getLogger(__name__)

_PRECEDENCE_VALUES = {"bulk", "junk", "list", "auto_reply"}
_SUPPRESS_VALUES = {"all", "oof", "autoreply"}
_BOUNCE_LOCAL_PARTS = {"mailer-daemon", "postmaster"}
_RETURNED_MESSAGE_TYPES = {"message/rfc822", "text/rfc822-headers"}
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|undelivered|delivery (status notification|failure|has failed)|"
    r"mail delivery (failed|failure|subsystem)|returned mail|failure notice|"
    r"could not be delivered|non[- ]?delivery",
    re.IGNORECASE,
)
_BRACKETED = re.compile(r"<([^<>\s]+)>")
# A "Message-ID:" line quoted in the text of a bounce that returns no separate part.
_QUOTED_MESSAGE_ID = re.compile(r"^\s*Message-ID:\s*<([^<>\s]+)>", re.IGNORECASE | re.MULTILINE)
_ADDRESS = re.compile(r"[^\s<>(),;:\"]+@[^\s<>(),;:\"]+")
# RFC 3463 status codes: class.subject.detail.
_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
# Enough for any real diagnostic line, and a bound on what a hostile report can store.
_MAX_DIAGNOSTIC_LENGTH = 1000


class AutomaticKind(str, enum.Enum):
    NONE = "none"
    AUTO_REPLY = "auto_reply"
    BOUNCE = "bounce"


@dataclass(frozen=True)
class Classification:
    """Whether a machine sent a mail, and why.

    ``reason`` names the signal that decided it, for logs. The bounce fields are set only
    for ``AutomaticKind.BOUNCE``: the lower-cased failed recipients, the Message-ID
    (without brackets) of the mail that bounced, the first failed recipient's RFC 3463
    status and its diagnostic text.
    """

    kind: AutomaticKind
    reason: str
    failed_recipients: list[str] = field(default_factory=list)
    original_message_id: str | None = None
    status: str | None = None
    diagnostic: str | None = None

    @property
    def automatic(self) -> str | None:
        """The value of ``InboundMessage.automatic``: None, "auto_reply" or "bounce"."""
        return None if self.kind is AutomaticKind.NONE else self.kind.value

    def bounce(self) -> Bounce | None:
        """Return the bounce details for ``InboundMessage.bounce``, or None for other mail."""
        if self.kind is not AutomaticKind.BOUNCE:
            return None
        return Bounce(
            failed_recipients=list(self.failed_recipients),
            original_message_id=self.original_message_id,
            status=self.status,
            diagnostic=self.diagnostic,
        )


@dataclass(frozen=True)
class _RecipientReport:
    recipient: str
    action: str
    status: str | None
    diagnostic: str | None

    @property
    def failed(self) -> bool:
        return self.action == "failed" or (self.status or "").startswith("5.")


def classify(message: Message) -> Classification:
    """Return whether ``message`` is an ordinary mail, an automatic reply or a bounce.

    Works on messages parsed with ``email.policy.default`` or ``compat32`` and never
    raises. A malformed header counts as absent, and a mail that cannot be read at all
    counts as an automatic reply.
    """
    try:
        return _classify(message)
    # Broad on purpose, as in the parser: one hostile mail must not stop its import. A mail
    # this module cannot read is treated as automatic, because replying to it is the riskier error.
    except (RecursionError, Exception) as error:
        logger.warning("automatic-mail check failed (%s: %s): treating the mail as automatic",
                       type(error).__name__, error)
        return Classification(AutomaticKind.AUTO_REPLY, f"unreadable: {type(error).__name__}")


def _classify(message: Message) -> Classification:
    if _is_delivery_report(message):
        return _classify_delivery_report(message)

    sender_local_part = _sender_local_part(message)
    if sender_local_part in _BOUNCE_LOCAL_PARTS:
        return _classify_bounce_sender(message, sender_local_part)

    reason = _auto_reply_reason(message)
    if reason is not None:
        return Classification(AutomaticKind.AUTO_REPLY, reason)
    return Classification(AutomaticKind.NONE, "no automatic-mail signal")


def _auto_reply_reason(message: Message) -> str | None:
    auto_submitted = _first_token(_header(message, "Auto-Submitted"))
    if auto_submitted and auto_submitted != "no":
        return f"Auto-Submitted: {auto_submitted}"

    precedence = _first_token(_header(message, "Precedence"))
    if precedence in _PRECEDENCE_VALUES:
        return f"Precedence: {precedence}"

    for name in ("X-Autoreply", "X-Autorespond"):
        value = _first_token(_header(message, name))
        if value is not None and value not in ("no", "false", "0"):
            return f"{name} present"

    suppress = _header(message, "X-Auto-Response-Suppress") or ""
    requested = {item.strip().lower() for item in suppress.split(",")} & _SUPPRESS_VALUES
    if requested:
        return f"X-Auto-Response-Suppress: {', '.join(sorted(requested))}"

    if _has_empty_return_path(message):
        return "empty return path"
    return None


def _is_delivery_report(message: Message) -> bool:
    if message.get_content_type() != "multipart/report":
        return False
    report_type = (message.get_param("report-type") or "")
    if isinstance(report_type, tuple):  # an RFC 2231 value
        report_type = report_type[2]
    if str(report_type).lower() == "delivery-status":
        return True
    # Some servers leave out report-type, but a delivery-status part still identifies the report.
    return any(part.get_content_type() == "message/delivery-status" for part in _children(message))


def _classify_delivery_report(message: Message) -> Classification:
    reports = []
    for part in _children(message):
        if part.get_content_type() == "message/delivery-status":
            reports.extend(_recipient_reports(part))
    failed = [report for report in reports if report.failed]
    if not failed:
        actions = ", ".join(sorted({report.action or "unknown" for report in reports})) or "none"
        return Classification(
            AutomaticKind.AUTO_REPLY, f"delivery status notification without a failure (action: {actions})"
        )

    first = failed[0]
    return Classification(
        AutomaticKind.BOUNCE,
        f"delivery status notification: {first.action or 'failed'} {first.status or ''}".strip(),
        failed_recipients=list(dict.fromkeys(report.recipient for report in failed if report.recipient)),
        original_message_id=_returned_message_id(message),
        status=first.status,
        diagnostic=first.diagnostic,
    )


def _classify_bounce_sender(message: Message, local_part: str) -> Classification:
    subject = _header(message, "Subject") or ""
    returned = any(part.get_content_type() in _RETURNED_MESSAGE_TYPES for part in _children(message))
    if not (returned or _BOUNCE_SUBJECT.search(subject)):
        return Classification(AutomaticKind.AUTO_REPLY, f"sender is {local_part}")

    # Exim names the failed addresses in a header, and other servers only in the text.
    failed = _ADDRESS.findall(_header(message, "X-Failed-Recipients") or "")
    text = _body_text(message)
    status_match = _STATUS.search(text)
    return Classification(
        AutomaticKind.BOUNCE,
        f"bounce from {local_part}",
        failed_recipients=list(dict.fromkeys(address.lower() for address in failed)),
        original_message_id=_returned_message_id(message) or _quoted_message_id(text),
        status=status_match.group(0) if status_match else None,
        diagnostic=None,
    )


def _recipient_reports(part: Message) -> list[_RecipientReport]:
    """Return the per-recipient blocks of a ``message/delivery-status`` part.

    The parser gives the blocks as header-only messages, the first being the per-message
    block. A part it could not split (an unusual transfer encoding) is split here.
    """
    payload = part.get_payload()
    if isinstance(payload, list):
        blocks = [block for block in payload if isinstance(block, Message)]
    else:
        text = _decoded_text(part)
        parser = email.parser.HeaderParser(policy=email.policy.compat32)
        blocks = [parser.parsestr(chunk.strip() + "\n") for chunk in re.split(r"\r?\n\s*\r?\n", text) if chunk.strip()]

    reports = []
    for block in blocks:
        recipient_field = _header(block, "Final-Recipient") or _header(block, "Original-Recipient")
        if not recipient_field:
            continue
        address = _ADDRESS.search(recipient_field.partition(";")[2] or recipient_field)
        status_match = _STATUS.search(_header(block, "Status") or "")
        diagnostic = " ".join((_header(block, "Diagnostic-Code") or "").split())
        reports.append(
            _RecipientReport(
                recipient=address.group(0).strip("<>").lower() if address else "",
                action=(_first_token(_header(block, "Action")) or ""),
                status=status_match.group(0) if status_match else None,
                diagnostic=diagnostic[:_MAX_DIAGNOSTIC_LENGTH] or None,
            )
        )
    return reports


def _returned_message_id(message: Message) -> str | None:
    """Return the Message-ID of the mail a report returns, from its returned part."""
    for part in _children(message):
        content_type = part.get_content_type()
        if content_type == "message/rfc822":
            inner = part.get_payload()
            inner = inner[0] if isinstance(inner, list) and inner else inner
            if isinstance(inner, Message):
                found = _bracketed_id(_header(inner, "Message-ID"))
                if found:
                    return found
        elif content_type == "text/rfc822-headers":
            headers = email.parser.HeaderParser(policy=email.policy.compat32).parsestr(_decoded_text(part))
            found = _bracketed_id(_header(headers, "Message-ID"))
            if found:
                return found
    return None


def _quoted_message_id(text: str) -> str | None:
    match = _QUOTED_MESSAGE_ID.search(text)
    return match.group(1) if match else None


def _children(message: Message) -> list[Message]:
    if not message.is_multipart():
        return []
    payload = message.get_payload()
    return [part for part in payload if isinstance(part, Message)] if isinstance(payload, list) else []


def _body_text(message: Message) -> str:
    """Return the text of the message's inline text/plain parts, not of returned messages."""
    if not message.is_multipart():
        return _decoded_text(message) if message.get_content_maintype() == "text" else ""
    texts = []
    for part in _children(message):
        if part.get_content_type() == "text/plain":
            texts.append(_decoded_text(part))
        elif part.get_content_maintype() == "multipart":
            texts.append(_body_text(part))
    return "\n".join(texts)


def _decoded_text(part: Message) -> str:
    data = part.get_payload(decode=True)
    if not isinstance(data, bytes):
        payload = part.get_payload()
        return payload if isinstance(payload, str) else ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return data.decode(charset, errors="replace")
    except LookupError:
        return data.decode("utf-8", errors="replace")


def _sender_local_part(message: Message) -> str | None:
    value = _header(message, "From") or ""
    # The address proper, not text in the display name ("postmaster@x" <alice@x>).
    _, address = email.utils.parseaddr(value)
    found = _ADDRESS.search(address or value)
    if found is None:
        return None
    return found.group(0).rpartition("@")[0].lower()


def _has_empty_return_path(message: Message) -> bool:
    # The delivering server adds Return-Path at the top, so the first one is the envelope sender.
    value = _header(message, "Return-Path")
    return value is not None and value.replace(" ", "") == "<>"


def _header(message: Message, name: str) -> str | None:
    """Return the first value of a header as one line of text, or None when it is absent."""
    try:
        value = message.get(name)
    # Broad on purpose: the header registry raises many kinds of errors on malformed values,
    # and the raw text is still there.
    except Exception:
        value = next((raw for key, raw in message.raw_items() if key.lower() == name.lower()), None)
    if value is None:
        return None
    return " ".join(str(value).split())


def _first_token(value: str | None) -> str | None:
    """Return the lower-cased value before any parameter or comment: ``auto-replied; x=y``."""
    if value is None:
        return None
    return re.split(r"[;(\s]", value.strip(), maxsplit=1)[0].lower()


def _bracketed_id(value: str | None) -> str | None:
    if not value:
        return None
    match = _BRACKETED.search(value)
    return match.group(1) if match else (value.strip() or None)
