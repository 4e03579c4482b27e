"""send_email and build_mime against a real aiosmtpd server on loopback."""

from __future__ import annotations

import email
import email.policy
import re
from collections.abc import Iterator

import pytest

from channels.email.parse import parse_email
from channels.email.smtp import SmtpSettings, build_mime, make_message_id, send_email
from channels.errors import PermanentSendError, TransientSendError
from channels.types import Address, AddressKind, Attachment, DeliveryState, OutboundMessage
from tests.support.smtp_server import SmtpTestServer

CUSTOMER = Address(AddressKind.EMAIL, "maria@example.org", "María López")


@pytest.fixture
def smtp_server() -> Iterator[SmtpTestServer]:
    with SmtpTestServer() as server:
        yield server


def reply(**fields: object) -> OutboundMessage:
    values: dict[str, object] = {
        "to": CUSTOMER,
        "text": "Your parcel left our warehouse today.",
        "subject": "Re: Order 1042 has not arrived",
        "message_id": "sb.reply-1@shop.example",
        "in_reply_to": "CAF12345.order1042@mail.example.org",
        "references": ["first@mail.example.org", "CAF12345.order1042@mail.example.org"],
    }
    values.update(fields)
    return OutboundMessage(**values)  # type: ignore[arg-type]


def test_send_email_delivers_threading_headers(smtp_server):
    result = send_email(smtp_server.settings(), reply())

    [mail] = smtp_server.wait_for(1)
    headers = mail.message
    assert headers["Message-ID"] == "<sb.reply-1@shop.example>"
    assert headers["In-Reply-To"] == "<CAF12345.order1042@mail.example.org>"
    assert headers["References"] == (
        "<first@mail.example.org> <CAF12345.order1042@mail.example.org>"
    )
    assert headers["Subject"] == "Re: Order 1042 has not arrived"
    assert headers["From"] == "Shop Support <support@shop.example>"
    assert headers["To"] == "María López <maria@example.org>"
    assert headers["Date"] is not None
    assert headers["Date"].datetime.tzinfo is not None
    assert headers["Auto-Submitted"] is None
    assert mail.message.get_content().strip() == "Your parcel left our warehouse today."
    assert mail.mail_from == "support@shop.example"
    assert mail.rcpt_tos == ("maria@example.org",)
    assert result.provider_message_id == "sb.reply-1@shop.example"
    assert result.status is DeliveryState.SENT


def test_sent_reply_threads_when_parsed_back(smtp_server):
    send_email(smtp_server.settings(), reply(message_id="<sb.bracketed@shop.example>"))

    [mail] = smtp_server.wait_for(1)
    parsed = parse_email(mail.raw)
    assert parsed.provider_message_id == "sb.bracketed@shop.example"
    assert parsed.in_reply_to == "CAF12345.order1042@mail.example.org"
    assert parsed.references == ["first@mail.example.org", "CAF12345.order1042@mail.example.org"]


def raw_header(raw: bytes, name: str) -> str:
    """Return a header's value as sent, unfolded but not decoded."""
    head = raw.split(b"\r\n\r\n", 1)[0].decode("ascii")
    unfolded = re.sub(r"\r\n[ \t]", " ", head)
    [value] = [line.split(":", 1)[1].strip() for line in unfolded.split("\r\n")
               if line.lower().startswith(name.lower() + ":")]
    return value


def test_long_message_ids_are_not_encoded(smtp_server):
    long_id = "sb." + "a" * 90 + "@shop.example"
    other_id = "b" * 80 + "@example.org"
    send_email(
        smtp_server.settings(), reply(in_reply_to=long_id, references=[other_id, long_id])
    )

    [mail] = smtp_server.wait_for(1)
    assert raw_header(mail.raw, "In-Reply-To") == f"<{long_id}>"
    assert raw_header(mail.raw, "References") == f"<{other_id}> <{long_id}>"
    assert all(len(line) <= 998 for line in mail.raw.split(b"\r\n"))


def test_html_alternative_and_attachments(smtp_server):
    message = reply(
        html='<p>Your parcel left. <img src="cid:logo@shop.example"></p>',
        attachments=[
            Attachment("label.pdf", "application/pdf", b"%PDF-1.4\n"),
            Attachment("logo.png", "image/png", b"\x89PNG\r\n", "logo@shop.example", True),
        ],
        reply_to="support+c42@shop.example",
    )

    send_email(smtp_server.settings(), message)

    [mail] = smtp_server.wait_for(1)
    parsed = parse_email(mail.raw)
    assert parsed.text == "Your parcel left our warehouse today."
    assert parsed.html == '<p>Your parcel left. <img src="cid:logo@shop.example"></p>'
    by_name = {attachment.filename: attachment for attachment in parsed.attachments}
    assert by_name["label.pdf"].data == b"%PDF-1.4\n"
    assert by_name["label.pdf"].inline is False
    assert by_name["logo.png"].content_id == "logo@shop.example"
    assert by_name["logo.png"].inline is True
    assert mail.message["Reply-To"] == "support+c42@shop.example"


def test_non_ascii_text_is_sent_7bit_clean(smtp_server):
    send_email(smtp_server.settings(), reply(text="Grüße, ваш заказ отправлен."))

    [mail] = smtp_server.wait_for(1)
    assert all(byte < 128 for byte in mail.raw)
    assert parse_email(mail.raw).text == "Grüße, ваш заказ отправлен."


def test_stopped_server_raises_transient_error(smtp_server):
    smtp_server.stop()

    with pytest.raises(TransientSendError) as raised:
        send_email(smtp_server.settings(), reply())

    assert raised.value.transient is True
    assert str(smtp_server.port) in str(raised.value)


def test_restarted_server_receives_the_retry_once(smtp_server):
    smtp_server.stop()
    with pytest.raises(TransientSendError):
        send_email(smtp_server.settings(), reply())

    smtp_server.start()
    send_email(smtp_server.settings(), reply())

    [mail] = smtp_server.wait_for(1)
    assert mail.message["Message-ID"] == "<sb.reply-1@shop.example>"
    assert len(smtp_server.received) == 1


def test_rejected_recipient_raises_permanent_error(smtp_server):
    smtp_server.reject_recipient("maria@example.org", "550 5.1.1 No such user here")

    with pytest.raises(PermanentSendError) as raised:
        send_email(smtp_server.settings(), reply())

    assert raised.value.code == "550"
    assert "No such user here" in str(raised.value)
    assert smtp_server.received == []


def test_greylisted_recipient_raises_transient_error(smtp_server):
    smtp_server.reject_recipient("maria@example.org", "450 4.2.0 Greylisted, try later")

    with pytest.raises(TransientSendError) as raised:
        send_email(smtp_server.settings(), reply())

    assert raised.value.code == "450"
    assert "Greylisted" in str(raised.value)


@pytest.mark.parametrize(
    ("server_reply", "error_type"),
    [
        ("451 4.3.0 Local error", TransientSendError),
        ("554 5.6.0 Content rejected", PermanentSendError),
    ],
)
def test_data_rejection_is_classified_by_code(smtp_server, server_reply, error_type):
    smtp_server.reject_data(server_reply)

    with pytest.raises(error_type) as raised:
        send_email(smtp_server.settings(), reply())

    assert raised.value.code == server_reply[:3]


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_login_with_right_password_sends():
    with SmtpTestServer(credentials=("agent", "s3cret")) as server:
        send_email(server.settings(), reply())

        assert len(server.wait_for(1)) == 1


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_wrong_password_raises_permanent_error():
    with (
        SmtpTestServer(credentials=("agent", "s3cret")) as server,
        pytest.raises(PermanentSendError) as raised,
    ):
        send_email(server.settings(password="wrong"), reply())

    assert raised.value.code == "535"
    assert "login rejected" in str(raised.value)
    assert "wrong" not in str(raised.value)


def test_starttls_missing_on_server_raises_permanent_error(smtp_server):
    settings = smtp_server.settings(security="starttls", username="agent", password="s3cret")

    with pytest.raises(PermanentSendError, match="STARTTLS"):
        send_email(settings, reply())

    assert smtp_server.received == []


def test_build_mime_requires_message_id():
    settings = SmtpSettings(host="127.0.0.1", port=25, from_address="support@shop.example")

    with pytest.raises(ValueError, match="message_id"):
        build_mime(reply(message_id=None), settings)


def test_build_mime_requires_a_sender():
    settings = SmtpSettings(host="127.0.0.1", port=25)

    with pytest.raises(ValueError, match="sender"):
        build_mime(reply(), settings)


def test_build_mime_uses_message_sender_without_from_address():
    settings = SmtpSettings(host="127.0.0.1", port=25)
    sender = Address(AddressKind.EMAIL, "agent@shop.example", "Agent Smith")

    mime = build_mime(reply(sender=sender), settings)

    assert mime["From"] == "Agent Smith <agent@shop.example>"


def test_build_mime_rejects_phone_recipient():
    settings = SmtpSettings(host="127.0.0.1", port=25, from_address="support@shop.example")

    with pytest.raises(ValueError, match="not an email address"):
        build_mime(reply(to=Address(AddressKind.PHONE, "+14155550100")), settings)


def test_build_mime_drops_invalid_reference_ids():
    settings = SmtpSettings(host="127.0.0.1", port=25, from_address="support@shop.example")

    mime = build_mime(reply(references=["ok@example.org", "bad id@x\r\nBcc: x@y"]), settings)

    assert mime["References"] == "<ok@example.org>"
    assert mime["Bcc"] is None


def test_build_mime_leaves_subject_alone():
    settings = SmtpSettings(host="127.0.0.1", port=25, from_address="support@shop.example")

    mime = build_mime(reply(subject="Order 1042"), settings)

    assert mime["Subject"] == "Order 1042"


def test_make_message_id_is_unique_and_bracketless():
    first = make_message_id("shop.example")
    second = make_message_id("shop.example")

    assert re.fullmatch(r"sb\.[0-9a-f]{32}@shop\.example", first)
    assert first != second


@pytest.mark.parametrize("domain", ["", "bad domain", "<x>"])
def test_make_message_id_rejects_invalid_domain(domain):
    with pytest.raises(ValueError, match="domain"):
        make_message_id(domain)


def test_unknown_security_mode_is_rejected():
    with pytest.raises(ValueError, match="security"):
        SmtpSettings(host="127.0.0.1", port=25, security="tls")


def test_built_message_round_trips_through_the_parser():
    settings = SmtpSettings(host="127.0.0.1", port=25, from_address="support@shop.example")

    raw = build_mime(reply(), settings).as_bytes()

    assert email.message_from_bytes(raw, policy=email.policy.default)["Message-ID"] == (
        "<sb.reply-1@shop.example>"
    )


@pytest.mark.parametrize(
    "quit_reply", ["421 4.3.2 Service shutting down", "554 5.3.0 Internal error", "451 4.3.0 Try again"]
)
def test_quit_error_after_accepted_data_still_sends(smtp_server, quit_reply):
    smtp_server.reply_to_quit(quit_reply)

    result = send_email(smtp_server.settings(), reply())

    assert result.provider_message_id == "sb.reply-1@shop.example"
    assert result.status is DeliveryState.SENT
    assert len(smtp_server.wait_for(1)) == 1


def test_quit_error_after_rejected_data_keeps_data_error(smtp_server):
    smtp_server.reject_data("554 5.6.0 Content rejected")
    smtp_server.reply_to_quit("421 4.3.2 Service shutting down")

    with pytest.raises(PermanentSendError) as raised:
        send_email(smtp_server.settings(), reply())

    assert raised.value.code == "554"
    assert "Content rejected" in str(raised.value)


@pytest.mark.parametrize(
    ("fields", "header"),
    [
        ({"subject": "Order 1042\r\nBcc: attacker@evil.example"}, "Subject"),
        ({"reply_to": "support@shop.example\nBcc: attacker@evil.example"}, "Reply-To"),
        ({"to": Address(AddressKind.EMAIL, "maria@example.org", "María\r\nBcc: x@evil.example")}, "To"),
        ({"to": Address(AddressKind.EMAIL, "not an address")}, "To"),
    ],
)
def test_unbuildable_email_raises_permanent_error(smtp_server, fields, header):
    with pytest.raises(PermanentSendError) as raised:
        send_email(smtp_server.settings(), reply(**fields))

    assert raised.value.transient is False
    assert str(raised.value).startswith("cannot build the email: ")
    assert f"invalid {header} " in str(raised.value)
    assert smtp_server.received == []


def test_missing_message_id_raises_permanent_error(smtp_server):
    with pytest.raises(PermanentSendError, match="missing message_id"):
        send_email(smtp_server.settings(), reply(message_id=None))
