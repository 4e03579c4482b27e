"""Recognising auto-replies and bounces, one small .eml file per signal."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path

import pytest

from channels.email.loops import AutomaticKind, classify
from channels.email.parse import parse_email
from channels.types import Bounce

DATA = Path(__file__).parent / "data"


def load(name: str) -> bytes:
    return (DATA / name).read_bytes()


def classify_file(name: str, policy=email.policy.default):
    return classify(email.message_from_bytes(load(name), policy=policy))


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("loops_auto_submitted.eml", "Auto-Submitted: auto-replied"),
        ("loops_precedence_bulk.eml", "Precedence: bulk"),
        ("loops_precedence_auto_reply.eml", "Precedence: auto_reply"),
        ("loops_x_autoreply.eml", "X-Autoreply present"),
        ("loops_x_autorespond.eml", "X-Autorespond present"),
        ("loops_auto_response_suppress.eml", "X-Auto-Response-Suppress: autoreply, oof"),
        ("loops_empty_return_path.eml", "empty return path"),
        ("loops_postmaster_person.eml", "sender is postmaster"),
    ],
)
def test_auto_reply_signal(name, reason):
    result = classify_file(name)

    assert result.kind is AutomaticKind.AUTO_REPLY
    assert result.reason == reason
    assert result.bounce() is None


@pytest.mark.parametrize(
    "name",
    ["loops_normal.eml", "loops_auto_submitted_no.eml", "loops_suppress_receipts_only.eml", "plain.eml"],
)
def test_person_written_mail_is_not_automatic(name):
    result = classify_file(name)

    assert result.kind is AutomaticKind.NONE
    assert result.automatic is None


def test_dsn_failure_is_bounce_with_details():
    result = classify_file("loops_dsn_failed.eml")

    assert result.kind is AutomaticKind.BOUNCE
    assert result.failed_recipients == ["nobody@customer.example"]
    assert result.original_message_id == "sb.0123456789abcdef01234567@shop.example"
    assert result.status == "5.1.1"
    assert result.diagnostic == (
        "smtp; 550 5.1.1 <nobody@customer.example>: Recipient address rejected: User unknown"
    )


def test_dsn_with_returned_headers_only():
    result = classify_file("loops_dsn_headers_only.eml")

    assert result.kind is AutomaticKind.BOUNCE
    assert result.failed_recipients == ["full@customer.example"]
    assert result.original_message_id == "sb.headers-only@shop.example"
    assert result.status == "5.2.2"
    assert result.diagnostic is None


def test_delayed_dsn_is_automatic_not_bounce():
    result = classify_file("loops_dsn_delayed.eml")

    assert result.kind is AutomaticKind.AUTO_REPLY
    assert "delayed" in result.reason


def test_mailer_daemon_plain_text_bounce():
    result = classify_file("loops_mailer_daemon_plain.eml")

    assert result.kind is AutomaticKind.BOUNCE
    assert result.failed_recipients == ["gone@old.example"]
    assert result.original_message_id == "sb.plain-bounce@shop.example"
    assert result.status == "5.1.1"


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("loops_dsn_failed.eml", AutomaticKind.BOUNCE),
        ("loops_auto_submitted.eml", AutomaticKind.AUTO_REPLY),
        ("loops_normal.eml", AutomaticKind.NONE),
    ],
)
def test_compat32_parse_gives_same_kind(name, kind):
    assert classify_file(name, policy=email.policy.compat32).kind is kind


def test_dsn_classified_without_report_type():
    raw = load("loops_dsn_failed.eml").replace(b" report-type=delivery-status;", b"")

    result = classify(email.message_from_bytes(raw, policy=email.policy.default))

    assert result.kind is AutomaticKind.BOUNCE
    assert result.failed_recipients == ["nobody@customer.example"]


def test_forwarded_bounce_from_customer_is_not_bounce():
    # A customer who forwards a bounce as an attachment wrote the outer mail.
    inner = load("loops_dsn_failed.eml")
    raw = (
        b"From: ola@customer.example\nTo: support@shop.example\nSubject: Fwd: bounce\n"
        b"Message-ID: <fwd1@customer.example>\nMIME-Version: 1.0\n"
        b'Content-Type: multipart/mixed; boundary="outer"\n\n'
        b"--outer\nContent-Type: text/plain\n\nWhy did this bounce?\n"
        b"--outer\nContent-Type: message/rfc822\n\n" + inner + b"\n--outer--\n"
    )

    assert classify(email.message_from_bytes(raw, policy=email.policy.default)).kind is AutomaticKind.NONE


def test_parse_email_fills_automatic_fields():
    bounce = parse_email(load("loops_dsn_failed.eml"))
    auto_reply = parse_email(load("loops_auto_submitted.eml"))
    normal = parse_email(load("loops_normal.eml"))

    assert bounce.automatic == "bounce"
    assert bounce.bounce == Bounce(
        failed_recipients=["nobody@customer.example"],
        original_message_id="sb.0123456789abcdef01234567@shop.example",
        status="5.1.1",
        diagnostic="smtp; 550 5.1.1 <nobody@customer.example>: Recipient address rejected: User unknown",
    )
    assert auto_reply.automatic == "auto_reply"
    assert auto_reply.bounce is None
    assert normal.automatic is None
    assert normal.bounce is None
