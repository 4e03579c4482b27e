"""Property-based tests of email intake: random and damaged MIME never escapes as a crash.

Inputs are the seed messages in ``data/*.eml`` and generated MIME trees (encoded words in
random charsets, nested multiparts with random boundaries, odd transfer encodings), each
optionally damaged by truncation and by bytes flipped, inserted or deleted. The profile is
derandomized, so every run checks the same examples and takes about the same time.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import quopri
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.engine import make_url

from channels.email.parse import parse_email
from channels.errors import ParseError
from channels.types import InboundMessage
from gateway import Switchboard, create_app, get_state
from gateway.config import Config
from inbox.channel_config import add_channel
from inbox.ingest import ingest_message, record_failed_payload
from inbox.models import Message, PayloadStatus, RawPayload

DATA = Path(__file__).parent / "data"
SEEDS = [path.read_bytes() for path in sorted(DATA.glob("*.eml"))]

PROFILE = settings(
    derandomize=True,
    database=None,
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Real charsets, charsets Python lacks or spells differently, and labels that are no charset.
CHARSETS = [
    "utf-8", "us-ascii", "iso-8859-1", "windows-1252", "iso-8859-15", "koi8-r", "shift_jis",
    "iso-2022-jp", "gb2312", "big5", "euc-kr", "utf-16", "utf-7", "x-unknown", "utf-8*en",
    "", "unicode-1-1-utf-7", "ks_c_5601-1987", "\"utf-8\"", "cp65001",
]
TRANSFER_ENCODINGS = ["7bit", "8bit", "binary", "base64", "quoted-printable", "x-uuencode", "bogus", ""]
MULTIPART_SUBTYPES = ["mixed", "alternative", "related", "digest", "signed", "report", "x-odd"]
LEAF_TYPES = [
    "text/plain", "text/html", "text/enriched", "image/png", "application/octet-stream",
    "application/pdf", "message/delivery-status", "text/rfc822-headers", "x/y", "text",
]
BOUNDARY_ALPHABET = "abcXYZ0123456789'()+_,-./:=? "

_channel_numbers = itertools.count(1)


# --- strategies -------------------------------------------------------------------------

def _encode_word(text: str, charset: str, use_base64: bool) -> str:
    try:
        data = text.encode(charset.strip('"').split("*")[0] or "utf-8", errors="replace")
    except LookupError:
        data = text.encode("utf-8")
    if use_base64:
        payload = base64.b64encode(data).decode("ascii")
    else:
        payload = quopri.encodestring(data, header=True).decode("ascii").replace("\n", "")
    return f"=?{charset}?{'B' if use_base64 else 'Q'}?{payload}?="


@st.composite
def encoded_words(draw: st.DrawFn) -> str:
    charset = draw(st.sampled_from(CHARSETS))
    text = draw(st.text(max_size=30))
    word = _encode_word(text, charset, draw(st.booleans()))
    if draw(st.integers(0, 9)) == 0:
        # A damaged word: an invalid base64 payload or a missing terminator.
        word = draw(st.sampled_from([word[:-2], word.replace("?B?", "?B?!!"), word + "?="]))
    return word


header_values = st.lists(
    st.one_of(
        st.text(alphabet=st.characters(blacklist_characters="\r\n"), max_size=40),
        encoded_words(),
        st.sampled_from(["<a@b>", "\"Doe, Jane\" <jane@example.org>", "undisclosed:;", "(comment)"]),
    ),
    max_size=4,
).map(" ".join)

addresses = st.one_of(
    st.just("customer@example.org"),
    st.builds("{} <{}@example.org>".format, encoded_words(), st.from_regex(r"[a-z0-9.+-]{1,20}", fullmatch=True)),
    header_values,
)

HEADER_NAMES = [
    "Subject", "To", "Cc", "Message-ID", "In-Reply-To", "References", "Date", "Reply-To",
    "Content-Type", "MIME-Version", "X-Spam", "Received",
]


@st.composite
def header_blocks(draw: st.DrawFn) -> bytes:
    lines = []
    if draw(st.integers(0, 9)) > 0:
        lines.append(f"From: {draw(addresses)}")
    for name in draw(st.lists(st.sampled_from(HEADER_NAMES), max_size=6)):
        lines.append(f"{name}: {draw(header_values)}")
    if draw(st.booleans()):
        lines.append(f"Message-ID: <{draw(st.uuids())}@example.org>")
    return "\r\n".join(lines).encode("utf-8", "surrogatepass")


def _transfer_encode(body: bytes, encoding: str) -> bytes:
    if encoding == "base64":
        return base64.encodebytes(body)
    if encoding == "quoted-printable":
        return quopri.encodestring(body)
    return body


@st.composite
def leaf_parts(draw: st.DrawFn) -> bytes:
    content_type = draw(st.sampled_from(LEAF_TYPES))
    charset = draw(st.sampled_from(CHARSETS))
    encoding = draw(st.sampled_from(TRANSFER_ENCODINGS))
    headers = [f"Content-Type: {content_type}; charset={charset}"]
    if encoding:
        headers.append(f"Content-Transfer-Encoding: {encoding}")
    disposition = draw(st.sampled_from(["", "inline", "attachment", "attachment; filename", "x"]))
    if disposition:
        name = draw(st.one_of(st.text(max_size=20), encoded_words()))
        parameter = draw(st.sampled_from([f'; filename="{name}"', f"; filename*=UTF-8''{name}", ""]))
        headers.append(f"Content-Disposition: {disposition}{parameter}")
    if draw(st.booleans()):
        headers.append(f"Content-ID: <{draw(st.text(max_size=10))}>")
    body = _transfer_encode(draw(st.binary(max_size=200)), encoding)
    head = "\r\n".join(headers).encode("utf-8", "surrogatepass")
    return head + b"\r\n\r\n" + body


boundaries = st.one_of(
    st.sampled_from(["b", "=_", "x", ""]),
    st.text(alphabet=BOUNDARY_ALPHABET, min_size=1, max_size=75),
)


def _extend_parts(children: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    return st.one_of(multipart_parts(children), rfc822_parts(children))


@st.composite
def multipart_parts(draw: st.DrawFn, children: st.SearchStrategy[bytes]) -> bytes:
    subtype = draw(st.sampled_from(MULTIPART_SUBTYPES))
    boundary = draw(boundaries)
    quoted = f'"{boundary}"' if draw(st.booleans()) else boundary
    parts = draw(st.lists(children, max_size=4))
    marker = f"--{boundary}".encode("utf-8")
    out = [f"Content-Type: multipart/{subtype}; boundary={quoted}".encode("utf-8"), b"", b"preamble"]
    for part in parts:
        out += [marker, part]
    if draw(st.booleans()):
        out.append(marker + b"--")
    return b"\r\n".join(out)


@st.composite
def rfc822_parts(draw: st.DrawFn, children: st.SearchStrategy[bytes]) -> bytes:
    inner = draw(header_blocks()) + b"\r\n" + draw(children)
    return b"Content-Type: message/rfc822\r\n\r\n" + inner


mime_bodies = st.recursive(leaf_parts(), _extend_parts, max_leaves=8)


@st.composite
def generated_messages(draw: st.DrawFn) -> bytes:
    return draw(header_blocks()) + b"\r\nMIME-Version: 1.0\r\n" + draw(mime_bodies)


@st.composite
def damaged(draw: st.DrawFn, messages: st.SearchStrategy[bytes]) -> bytes:
    """Apply a few random edits to a message: flip, insert or delete bytes, or truncate it."""
    data = bytearray(draw(messages))
    for _ in range(draw(st.integers(0, 4))):
        edit = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        at = draw(st.integers(0, len(data)))
        if edit == "flip" and at < len(data):
            data[at] ^= draw(st.integers(1, 255))
        elif edit == "insert":
            data[at:at] = draw(st.one_of(
                st.binary(min_size=1, max_size=8),
                st.sampled_from([b"\r\n", b"\r\n\r\n", b"\x00", b"\xff\xfe", b"=?", b"--", b"\n--b\n"]),
            ))
        elif edit == "delete":
            del data[at:at + draw(st.integers(1, 16))]
        elif edit == "truncate":
            del data[at:]
    return bytes(data)


raw_mail = damaged(st.one_of(st.sampled_from(SEEDS), generated_messages()))


# --- checks -----------------------------------------------------------------------------

def _texts(message: InboundMessage) -> Iterator[tuple[str, str]]:
    """Yield every text field that reaches the database, with its name."""
    yield "provider_message_id", message.provider_message_id
    for field in ("subject", "text", "html", "in_reply_to"):
        value = getattr(message, field)
        if value is not None:
            yield field, value
    for index, reference in enumerate(message.references):
        yield f"references[{index}]", reference
    for kind, people in (("sender", [message.sender]), ("recipients", message.recipients), ("cc", message.cc)):
        for person in people:
            yield kind, person.value
            if person.display_name is not None:
                yield f"{kind} display name", person.display_name
    for attachment in message.attachments:
        yield "attachment filename", attachment.filename
        yield "attachment content type", attachment.content_type
        if attachment.content_id is not None:
            yield "attachment content id", attachment.content_id


def _is_storable(value: str) -> bool:
    # SQLite rejects lone surrogates and PostgreSQL also rejects NUL in text columns.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in value


# A NUL in the Content-Type value once reached the attachment's content type, which
# PostgreSQL rejects.
NUL_IN_CONTENT_TYPE = b"From: a@example.org\r\nContent-Type: text/pl\x00ain\r\n\r\nhello\r\n"


@given(raw=raw_mail)
@example(raw=NUL_IN_CONTENT_TYPE)
@PROFILE
def test_parse_email_raises_only_parse_error(raw):
    try:
        message = parse_email(raw)
    except ParseError:
        return

    assert message.raw == raw
    assert message.provider_message_id
    assert "@" in message.sender.value
    for field, value in _texts(message):
        assert _is_storable(value), f"{field} is not storable: {value!r}"


# --- through the inbox ------------------------------------------------------------------

@pytest.fixture(scope="module")
def shared_state(migrated_template: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Switchboard]:
    """One database for every example: Hypothesis runs many examples per test call."""
    database_url = migrated_template
    if migrated_template.startswith("sqlite"):
        copy = tmp_path_factory.mktemp("properties") / "switchboard.db"
        shutil.copy(make_url(migrated_template).database, copy)
        database_url = f"sqlite:///{copy}"
    instance = tmp_path_factory.mktemp("properties-instance")
    app = create_app(Config(database_url=database_url, secret_key="test-secret-key", instance_dir=str(instance)))
    state = get_state(app)
    yield state
    state.engine.dispose()


def _new_channel(state: Switchboard) -> int:
    """Add an email channel of its own for one example, so no earlier example is a duplicate."""
    number = next(_channel_numbers)
    with state.session_factory() as session:
        channel = add_channel(
            session, "email", f"Properties {number}", f"support-{number}@shop.example",
            {
                "imap_host": "127.0.0.1", "imap_port": 143, "imap_username": "support",
                "imap_password": "unused", "imap_ssl": False,
                "smtp_host": "127.0.0.1", "smtp_port": 25, "smtp_security": "none",
            },
        )
        session.commit()
        return channel.id


def test_ingest_keeps_raw_bytes_of_any_mail(shared_state):
    # Hypothesis calls the inner function once per example, with the module's database.
    @given(raw=raw_mail)
    @PROFILE
    def check(raw: bytes) -> None:
        channel_id = _new_channel(shared_state)
        digest = hashlib.sha256(raw).hexdigest()

        with shared_state.session_factory() as session:
            try:
                inbound = parse_email(raw)
            except ParseError as error:
                assert record_failed_payload(session, channel_id, raw, "rfc822", str(error)) is not None
                inbound = None
            else:
                result = ingest_message(session, channel_id, inbound)
                assert not result.duplicate
                assert ingest_message(session, channel_id, inbound).duplicate

        with shared_state.session_factory() as session:
            payloads = session.scalars(select(RawPayload).where(RawPayload.channel_id == channel_id)).all()
            assert len(payloads) == 1
            payload = payloads[0]
            assert payload.body == raw
            assert payload.digest == digest
            if inbound is None:
                assert payload.status == PayloadStatus.FAILED.value
                assert payload.error
                return
            assert payload.status == PayloadStatus.PROCESSED.value
            message = session.scalar(select(Message).where(Message.channel_id == channel_id))
            assert message is not None
            assert message.raw_payload_id == payload.id

    check()
