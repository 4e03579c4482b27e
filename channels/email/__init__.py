"""The email channel: parse RFC 5322 mail, read IMAP folders, send over SMTP."""

from channels.email.html import html_to_text, sanitize_html
from channels.email.imap import (
    Checkpoint,
    FetchedMail,
    ImapReader,
    ImapSettings,
    MailboxAuthError,
    MailboxError,
)
from channels.email.parse import parse_email, strip_brackets
from channels.email.smtp import SmtpSettings, build_mime, make_message_id, send_email

__all__ = [
    "Checkpoint",
    "FetchedMail",
    "ImapReader",
    "ImapSettings",
    "MailboxAuthError",
    "MailboxError",
    "SmtpSettings",
    "build_mime",
    "html_to_text",
    "make_message_id",
    "parse_email",
    "sanitize_html",
    "send_email",
    "strip_brackets",
]
