"""Unpack TNEF parts ("winmail.dat", application/ms-tnef) that Outlook and Exchange send.

A TNEF stream (Microsoft's [MS-OXTNEF]) is the signature 0x223E9F78, a 16-bit key and a series
of attributes. Each attribute is a level byte (1 for the message, 2 for an attachment), a 32-bit
id whose low word names the attribute, a 32-bit length, the data and a 16-bit checksum, the sum
of the data bytes. Integers are little-endian. An attachment starts at its attAttachRendData
attribute and owns the level-2 attributes after it. attMAPIProps (message) and attAttachment carry
MAPI property lists: the body as text, HTML or compressed RTF, and each attachment's long file
name, MIME type and data.

The reader is strict about structure and lenient about content. A stream cut short or a property
of an unknown type raises ``TnefError``, so the caller keeps the part as it arrived. Checksums are
not verified, because the lengths already frame the data, and unknown attributes are ignored.
"""

from __future__ import annotations

import codecs
import email
import email.policy
import logging
import mimetypes
import re
import struct
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from email.utils import format_datetime, formataddr

from channels.errors import ChannelError

logger = logging.getLogger(__name__)

SIGNATURE = 0x223E9F78
LEVEL_ATTACHMENT = 0x02

# Attribute ids, the low word of the 32-bit id ([MS-OXTNEF] 2.1.3.3).
_ATT_SUBJECT = 0x8004
_ATT_DATE_SENT = 0x8005
_ATT_BODY = 0x800C
_ATT_ATTACH_DATA = 0x800F
_ATT_ATTACH_TITLE = 0x8010
_ATT_ATTACH_REND_DATA = 0x9002
_ATT_MAPI_PROPS = 0x9003
_ATT_ATTACHMENT = 0x9005
_ATT_OEM_CODEPAGE = 0x9007

# MAPI property ids ([MS-OXPROPS]).
_PR_SUBJECT = 0x0037
_PR_CLIENT_SUBMIT_TIME = 0x0039
_PR_SENDER_NAME = 0x0C1A
_PR_SENDER_EMAIL_ADDRESS = 0x0C1F
_PR_BODY = 0x1000
_PR_RTF_COMPRESSED = 0x1009
_PR_BODY_HTML = 0x1013
_PR_DISPLAY_NAME = 0x3001
_PR_ATTACH_DATA = 0x3701
_PR_ATTACH_FILENAME = 0x3704
_PR_ATTACH_METHOD = 0x3705
_PR_ATTACH_LONG_FILENAME = 0x3707
_PR_ATTACH_MIME_TAG = 0x370E
_PR_ATTACH_CONTENT_ID = 0x3712
_PR_INTERNET_CPID = 0x3FDE
_PR_ATTACHMENT_HIDDEN = 0x7FFE
_ATTACH_EMBEDDED_MESSAGE = 5

# MAPI property types and the size of their fixed values before the padding to 4 bytes.
_PT_STRING8 = 0x001E
_PT_UNICODE = 0x001F
_PT_BINARY = 0x0102
_PT_OBJECT = 0x000D
_PT_TIME = 0x0040
_PT_MULTIPLE = 0x1000
_VARIABLE_TYPES = {_PT_STRING8, _PT_UNICODE, _PT_BINARY, _PT_OBJECT}
_FIXED_SIZES = {
    0x0002: 2,  # PtypInteger16
    0x0003: 4,  # PtypInteger32
    0x0004: 4,  # PtypFloating32
    0x0005: 8,  # PtypFloating64
    0x0006: 8,  # PtypCurrency
    0x0007: 8,  # PtypFloatingTime
    0x000A: 4,  # PtypErrorCode
    0x000B: 2,  # PtypBoolean
    0x0014: 8,  # PtypInteger64
    _PT_TIME: 8,  # FILETIME
    0x0048: 16,  # PtypGuid
}
# Properties with an id from 0x8000 up are named: a GUID and a number or a string follow the tag.
_FIRST_NAMED_ID = 0x8000
_NAME_KIND_STRING = 1

# IID_IMessage {00020307-0000-0000-C000-000000000046} as stored: an embedded Outlook message.
_IID_IMESSAGE = bytes.fromhex("0703020000000000c000000000000046")
_IID_LENGTH = 16

# Embedded messages can embed messages in turn. The bound stops a stream built to nest without end.
_MAX_EMBEDDING_DEPTH = 8

_MIME_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*$")
_FILETIME_EPOCH = datetime(1601, 1, 1, tzinfo=timezone.utc)


class TnefError(ChannelError):
    """A TNEF stream is not TNEF, is cut short, or has a structure this reader cannot follow."""


@dataclass(frozen=True)
class TnefFile:
    """An attachment unpacked from TNEF. ``filename`` is as sent: it may be empty or unsafe."""

    filename: str
    content_type: str
    data: bytes
    content_id: str | None = None
    hidden: bool = False


@dataclass(frozen=True)
class TnefContent:
    """The body and attachments of a TNEF stream. Each body is None when the stream has none."""

    text: str | None
    html: str | None
    files: list[TnefFile] = field(default_factory=list)


@dataclass
class _Attachment:
    attributes: dict[int, bytes] = field(default_factory=dict)
    properties: dict[int, tuple[int, object]] = field(default_factory=dict)


@dataclass
class _Stream:
    """The attributes and MAPI properties of a message, and its attachments."""

    codec: str = "cp1252"  # for 8-bit strings, from attOemCodepage
    attributes: dict[int, bytes] = field(default_factory=dict)
    properties: dict[int, tuple[int, object]] = field(default_factory=dict)
    attachments: list[_Attachment] = field(default_factory=list)


def is_tnef(data: bytes) -> bool:
    """Tell whether ``data`` starts with the TNEF signature."""
    return len(data) >= 6 and struct.unpack_from("<I", data)[0] == SIGNATURE


def read_tnef(data: bytes) -> TnefContent:
    """Read the body and attachments of a TNEF stream.

    Return the plain-text and HTML bodies and the attachments in stream order. An RTF body
    becomes HTML when it encapsulates HTML, else plain text. An embedded Outlook message becomes
    a ``message/rfc822`` file. Raise ``TnefError`` when ``data`` is not a TNEF stream or its
    structure is broken.
    """
    return _content(_parse_stream(data), depth=0)


def _content(stream: _Stream, depth: int) -> TnefContent:
    text, html = _bodies(stream)
    files = [_file(attachment, stream.codec, depth) for attachment in stream.attachments]
    return TnefContent(text=text, html=html, files=[file for file in files if file is not None])


def _parse_stream(data: bytes) -> _Stream:
    """Sort the attributes of a TNEF stream into the message's and each attachment's."""
    if not is_tnef(data):
        raise TnefError("not a TNEF stream: the signature 0x223E9F78 is missing")
    stream = _Stream()
    for level, name, value in _attributes(data):
        if name == _ATT_OEM_CODEPAGE and len(value) >= 4:
            stream.codec = _codec_name(struct.unpack_from("<I", value)[0]) or stream.codec
        elif name == _ATT_ATTACH_REND_DATA:
            stream.attachments.append(_Attachment())
        elif level == LEVEL_ATTACHMENT:
            if not stream.attachments:
                continue  # an attachment attribute before any attachment started
            if name == _ATT_ATTACHMENT:
                stream.attachments[-1].properties.update(_properties(value))
            else:
                stream.attachments[-1].attributes[name] = value
        elif name == _ATT_MAPI_PROPS:
            stream.properties.update(_properties(value))
        else:
            stream.attributes[name] = value
    return stream


def _attributes(data: bytes):
    """Yield ``(level, attribute id, data)`` for each attribute after the stream header."""
    position = 6
    while position < len(data):
        if len(data) - position < 11:
            if not any(data[position:]):
                return  # zero padding after the last attribute
            raise TnefError(f"the TNEF stream is cut short at byte {position}")
        level, attribute_id, length = struct.unpack_from("<BII", data, position)
        start = position + 9
        end = start + length
        if end + 2 > len(data):
            raise TnefError(f"the TNEF attribute at byte {position} is longer than the stream")
        yield level, attribute_id & 0xFFFF, data[start:end]
        position = end + 2  # after the checksum


def _properties(data: bytes) -> dict[int, tuple[int, object]]:
    """Read a MAPI property list into ``{property id: (type, value)}``.

    Strings of type PT_STRING8 stay bytes, because their code page is known only at the end of
    the stream. A multi-valued property keeps its first value.
    """
    reader = _Reader(data)
    count = reader.uint32()
    properties: dict[int, tuple[int, object]] = {}
    for _ in range(count):
        property_type, property_id = reader.uint16(), reader.uint16()
        if property_id >= _FIRST_NAMED_ID:
            reader.skip(_IID_LENGTH)
            if reader.uint32() == _NAME_KIND_STRING:
                reader.padded(reader.uint32())
            else:
                reader.uint32()
        base_type = property_type & ~_PT_MULTIPLE
        if property_type & _PT_MULTIPLE or base_type in _VARIABLE_TYPES:
            values = [_value(reader, base_type) for _ in range(reader.uint32())]
        else:
            values = [_value(reader, base_type)]
        if values and property_id not in properties:
            properties[property_id] = (base_type, values[0])
    return properties


def _value(reader: _Reader, property_type: int) -> object:
    if property_type in _VARIABLE_TYPES:
        data = reader.padded(reader.uint32())
        if property_type == _PT_UNICODE:
            return data.decode("utf-16-le", "replace").split("\x00", 1)[0]
        if property_type == _PT_OBJECT:
            return data[:_IID_LENGTH], data[_IID_LENGTH:]
        return data
    size = _FIXED_SIZES.get(property_type)
    if size is None:
        raise TnefError(f"unknown MAPI property type 0x{property_type:04x} in a TNEF stream")
    data = reader.padded(size)
    if size in (2, 4):
        return int.from_bytes(data, "little")
    return data


class _Reader:
    """Little-endian reads from ``data`` that raise ``TnefError`` past its end."""

    def __init__(self, data: bytes):
        self.data = data
        self.position = 0

    def take(self, size: int) -> bytes:
        end = self.position + size
        if size < 0 or end > len(self.data):
            raise TnefError("a MAPI property list in the TNEF stream is cut short")
        value = self.data[self.position:end]
        self.position = end
        return value

    def skip(self, size: int) -> None:
        self.take(size)

    def padded(self, size: int) -> bytes:
        value = self.take(size)
        self.skip(-size % 4)
        return value

    def uint16(self) -> int:
        return int.from_bytes(self.take(2), "little")

    def uint32(self) -> int:
        return int.from_bytes(self.take(4), "little")


def _codec_name(code_page: int) -> str | None:
    """Return the Python codec for a Windows code page number, or None when Python has none."""
    names = {65001: "utf-8", 1200: "utf-16-le", 20127: "ascii", 28591: "latin-1"}
    name = names.get(code_page, f"cp{code_page}")
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None


def _string(value: object, codec: str) -> str | None:
    """Return a string property or attribute as text, without its NUL terminator."""
    if isinstance(value, str):
        text = value
    elif isinstance(value, bytes):
        text = value.decode(codec, "replace").split("\x00", 1)[0]
    else:
        return None
    return text or None


def _property_string(properties: dict[int, tuple[int, object]], key: int, codec: str) -> str | None:
    entry = properties.get(key)
    return None if entry is None else _string(entry[1], codec)


def _bodies(stream: _Stream) -> tuple[str | None, str | None]:
    """Return the plain-text and HTML bodies of a message."""
    properties, codec = stream.properties, stream.codec
    text = _property_string(properties, _PR_BODY, codec) or _string(stream.attributes.get(_ATT_BODY), codec)

    html = None
    entry = properties.get(_PR_BODY_HTML)
    if entry is not None:
        # PR_HTML is often binary in the message's internet code page.
        cpid = properties.get(_PR_INTERNET_CPID, (0, 0))[1]
        html_codec = _codec_name(cpid) if isinstance(cpid, int) and cpid else None
        html = _string(entry[1], html_codec or codec)

    rtf = properties.get(_PR_RTF_COMPRESSED, (0, None))[1]
    if html is None and isinstance(rtf, bytes):
        try:
            rtf_html, rtf_text = rtf_to_html_or_text(decompress_rtf(rtf))
        except TnefError as error:
            logger.info("the RTF body of a TNEF stream was skipped: %s", error)
        else:
            html = rtf_html
            text = text or rtf_text
    if text is not None:
        text = text.replace("\r\n", "\n")  # Outlook's CRLF, so that text from RTF and PR_BODY agree
    return text, html


def _file(attachment: _Attachment, codec: str, depth: int) -> TnefFile | None:
    """Return an attachment as a file, or None when it has neither a name nor data."""
    properties = attachment.properties
    name = (
        _property_string(properties, _PR_ATTACH_LONG_FILENAME, codec)
        or _property_string(properties, _PR_ATTACH_FILENAME, codec)
        or _string(attachment.attributes.get(_ATT_ATTACH_TITLE), codec)
        or _property_string(properties, _PR_DISPLAY_NAME, codec)
        or ""
    )
    content_id = _property_string(properties, _PR_ATTACH_CONTENT_ID, codec)
    hidden = bool(properties.get(_PR_ATTACHMENT_HIDDEN, (0, 0))[1])

    data = attachment.attributes.get(_ATT_ATTACH_DATA, b"")
    entry = properties.get(_PR_ATTACH_DATA)
    if entry is not None and entry[0] == _PT_BINARY:
        data = entry[1]
    elif entry is not None and entry[0] == _PT_OBJECT:
        interface, data = entry[1]
        method = properties.get(_PR_ATTACH_METHOD, (0, 0))[1]
        if interface == _IID_IMESSAGE or method == _ATTACH_EMBEDDED_MESSAGE:
            return _embedded_message(data, name, depth)
    if not name and not data:
        return None
    return TnefFile(name, _content_type(properties, name, codec), data, content_id, hidden)


def _content_type(properties: dict[int, tuple[int, object]], name: str, codec: str) -> str:
    """Return the attachment's MIME tag when it is a valid type, else a guess from its name."""
    tag = (_property_string(properties, _PR_ATTACH_MIME_TAG, codec) or "").strip().lower()
    if _MIME_TYPE.match(tag):
        return tag
    return mimetypes.guess_type(name, strict=False)[0] or "application/octet-stream"


def _embedded_message(data: bytes, name: str, depth: int) -> TnefFile:
    """Return an embedded Outlook message, itself a TNEF stream, as a ``message/rfc822`` file."""
    if depth >= _MAX_EMBEDDING_DEPTH:
        raise TnefError(f"TNEF messages are embedded more than {_MAX_EMBEDDING_DEPTH} levels deep")
    stream = _parse_stream(data)
    content = _content(stream, depth + 1)
    message = EmailMessage()
    headers = _embedded_headers(stream)
    for header, value in headers.items():
        try:
            message[header] = value
        except (ValueError, TypeError):
            logger.info("the %s header of an embedded TNEF message was skipped", header)

    if content.text is not None:
        message.set_content(content.text)
    if content.html is not None:
        if content.text is None:
            message.set_content(content.html, subtype="html")
        else:
            message.add_alternative(content.html, subtype="html")
    for file in content.files:
        if file.content_type == "message/rfc822":
            message.add_attachment(email.message_from_bytes(file.data, policy=email.policy.default))
            continue
        maintype, _, subtype = file.content_type.partition("/")
        # A header parameter must not contain line breaks, and the name is as the sender wrote it.
        filename = "".join(char for char in file.filename if char.isprintable())
        message.add_attachment(file.data, maintype=maintype, subtype=subtype, filename=filename or None)

    stem = name.removesuffix(".msg") or headers.get("Subject") or "message"
    try:
        data = message.as_bytes()
    except (ValueError, UnicodeError) as error:
        raise TnefError(f"an embedded TNEF message could not be written as .eml: {error}") from error
    return TnefFile(f"{stem}.eml", "message/rfc822", data)


def _embedded_headers(stream: _Stream) -> dict[str, str]:
    """Return the Subject, From and Date of an embedded message, where it has them."""
    properties, codec = stream.properties, stream.codec
    headers = {}
    subject = _property_string(properties, _PR_SUBJECT, codec) or _string(stream.attributes.get(_ATT_SUBJECT), codec)
    if subject:
        headers["Subject"] = " ".join(subject.split())
    address = _property_string(properties, _PR_SENDER_EMAIL_ADDRESS, codec) or ""
    sender_name = " ".join((_property_string(properties, _PR_SENDER_NAME, codec) or "").split())
    if "@" in address and not re.search(r"[\s<>\"]", address):
        headers["From"] = formataddr((sender_name, address))
    sent_at = _sent_at(stream)
    if sent_at is not None:
        headers["Date"] = format_datetime(sent_at)
    return headers


def _sent_at(stream: _Stream) -> datetime | None:
    """Return the send time from PR_CLIENT_SUBMIT_TIME (a FILETIME) or attDateSent, in UTC."""
    entry = stream.properties.get(_PR_CLIENT_SUBMIT_TIME)
    try:
        if entry is not None and entry[0] == _PT_TIME and isinstance(entry[1], bytes):
            ticks = int.from_bytes(entry[1], "little")  # 100-nanosecond units since 1601
            return _FILETIME_EPOCH + timedelta(microseconds=ticks // 10)
        value = stream.attributes.get(_ATT_DATE_SENT, b"")
        if len(value) >= 12:
            year, month, day, hour, minute, second = struct.unpack_from("<6H", value)
            return datetime(year, month, day, hour, minute, second, tzinfo=timezone.utc)
    except (OverflowError, ValueError):
        return None
    return None


# The dictionary that compressed RTF starts from ([MS-OXRTFCP] 2.1.2.1).
_RTF_PREBUFFER = (
    b"{\\rtf1\\ansi\\mac\\deff0\\deftab720{\\fonttbl;}{\\f0\\fnil \\froman \\fswiss \\fmodern \\fscript "
    b"\\fdecor MS Sans SerifSymbolArialTimes New RomanCourier{\\colortbl\\red0\\green0\\blue0\r\n\\par "
    b"\\pard\\plain\\f0\\fs20\\b\\i\\u\\tab\\tx"
)
_RTF_COMPRESSED = 0x75465A4C  # "LZFu"
_RTF_UNCOMPRESSED = 0x414C454D  # "MELA"
_RTF_HEADER_LENGTH = 16
_DICTIONARY_SIZE = 4096
MAX_RTF_BYTES = 2 * 1024 * 1024


def decompress_rtf(data: bytes) -> bytes:
    """Decompress a PR_RTF_COMPRESSED value ([MS-OXRTFCP]): LZFu-compressed or stored as is.

    The header is four 32-bit values: the size of what follows the first, the uncompressed
    size, the kind ("LZFu" or "MELA") and a CRC, which is not checked. Raise ``TnefError`` for
    an unknown kind or a value shorter than the header.
    """
    if len(data) < _RTF_HEADER_LENGTH:
        raise TnefError("the compressed RTF body is shorter than its 16-byte header")
    compressed_size, raw_size, kind, _crc = struct.unpack_from("<IIII", data)
    end = min(len(data), 4 + compressed_size)
    if kind == _RTF_UNCOMPRESSED:
        return data[_RTF_HEADER_LENGTH:end]
    if kind != _RTF_COMPRESSED:
        raise TnefError(f"unknown compressed RTF kind 0x{kind:08x}")

    # The declared size comes from the sender, so the output is also capped: each 2-byte
    # reference expands to up to 17 bytes, and a hostile body would otherwise cost seconds
    # of CPU per megabyte.
    limit = min(raw_size, MAX_RTF_BYTES)
    dictionary = bytearray(_DICTIONARY_SIZE)
    dictionary[: len(_RTF_PREBUFFER)] = _RTF_PREBUFFER
    write = len(_RTF_PREBUFFER)
    output = bytearray()
    position = _RTF_HEADER_LENGTH
    while position < end:
        control = data[position]
        position += 1
        # Each bit of the control byte, lowest first, tells whether a literal byte (0) or a
        # 2-byte reference into the dictionary (1) comes next.
        for bit in range(8):
            if position >= end:
                break
            if not control & (1 << bit):
                literal = data[position]
                position += 1
                output.append(literal)
                dictionary[write] = literal
                write = (write + 1) % _DICTIONARY_SIZE
            else:
                if position + 2 > end:
                    break
                reference = (data[position] << 8) | data[position + 1]
                position += 2
                offset, length = reference >> 4, (reference & 0xF) + 2
                if offset == write:
                    return bytes(output[:limit])  # the end marker
                if _copyable_as_slice(offset, write, length):
                    run = dictionary[offset:offset + length]
                    dictionary[write:write + length] = run
                else:
                    run = bytearray()
                    for step in range(length):
                        # This run overlaps the bytes it is writing or wraps around the
                        # dictionary's end, so it is copied one byte at a time.
                        byte = dictionary[(offset + step) % _DICTIONARY_SIZE]
                        run.append(byte)
                        dictionary[(write + step) % _DICTIONARY_SIZE] = byte
                write = (write + length) % _DICTIONARY_SIZE
                output += run
            if len(output) >= limit:
                # NOTE: a body cut here loses its end; real RTF bodies stay far below the limit.
                return bytes(output[:limit])
    return bytes(output[:limit])


def _copyable_as_slice(offset: int, write: int, length: int) -> bool:
    """Return whether a dictionary run can be copied in one slice: no wrap, no overlap."""
    if offset + length > _DICTIONARY_SIZE or write + length > _DICTIONARY_SIZE:
        return False
    return offset + length <= write or write + length <= offset


_RTF_TOKEN = re.compile(
    rb"\\([a-zA-Z]{1,32})(-?\d{1,10})? ?"  # control word with an optional number
    rb"|\\'([0-9a-fA-F]{2})"  # a byte in the document's code page
    rb"|\\([^a-zA-Z])"  # control symbol
    rb"|([{}])"
    rb"|([^\\{}\r\n]+)"  # text
)
# Destinations whose text is not part of the body, besides every "{\*\..." group but htmltag.
_RTF_SKIPPED_DESTINATIONS = {
    b"fonttbl", b"colortbl", b"stylesheet", b"info", b"pict", b"object", b"header", b"footer",
    b"headerl", b"headerr", b"headerf", b"footerl", b"footerr", b"footerf", b"footnote",
    b"listtable", b"listoverridetable", b"rsidtbl", b"generator", b"xmlnstbl", b"themedata",
    b"colorschememapping", b"latentstyles", b"datastore", b"fldinst", b"filetbl", b"revtbl",
}
_RTF_CHARACTERS = {
    b"par": "\n", b"line": "\n", b"row": "\n", b"tab": "\t", b"cell": "\t", b"emdash": "\u2014",
    b"endash": "\u2013", b"lquote": "\u2018", b"rquote": "\u2019", b"ldblquote": "\u201c",
    b"rdblquote": "\u201d", b"bullet": "\u2022", b"emspace": "\u2003", b"enspace": "\u2002",
}
_RTF_SYMBOLS = {b"~": "\u00a0", b"_": "\u2011", b"-": "", b"\\": "\\", b"{": "{", b"}": "}"}


@dataclass
class _RtfGroup:
    skipped: bool = False
    suppressed: bool = False  # inside \htmlrtf: RTF-only text that the encapsulated source lacks
    unicode_skip: int = 1  # \ucN: how many fallback characters follow each \u


def rtf_to_html_or_text(rtf: bytes) -> tuple[str | None, str | None]:
    """Return ``(html, None)`` for RTF that encapsulates HTML, else ``(None, text)``.

    Outlook stores an HTML body as RTF with ``\\fromhtml1`` ([MS-OXRTFEX]): the HTML source
    sits in ``{\\*\\htmltag ...}`` groups and in text outside ``\\htmlrtf`` spans. Other RTF
    is read as plain text: paragraphs, tabs and characters, without formatting.
    """
    header = rtf[:1024]
    from_html = b"\\fromhtml" in header
    codec_match = re.search(rb"\\ansicpg(\d+)", header)
    codec = (_codec_name(int(codec_match.group(1))) if codec_match else None) or "cp1252"

    parts: list[str] = []
    pending = bytearray()  # code page bytes, decoded together so multi-byte characters survive
    stack = [_RtfGroup()]
    group_start = starred = False
    fallback = 0  # fallback characters of the last \u still to skip

    def flush() -> None:
        if pending:
            parts.append(pending.decode(codec, "replace"))
            pending.clear()

    for match in _RTF_TOKEN.finditer(rtf):
        word, number, hex_byte, symbol, brace, text = match.groups()
        state = stack[-1]
        if brace == b"{":
            stack.append(_RtfGroup(state.skipped, state.suppressed, state.unicode_skip))
            group_start, starred = True, False
            continue
        if brace == b"}":
            if len(stack) > 1:
                stack.pop()
            group_start = starred = False
            continue
        if symbol == b"*" and group_start:
            starred = True
            continue
        if group_start and word is not None:
            if word == b"htmltag":
                state.suppressed = False
            elif starred or word in _RTF_SKIPPED_DESTINATIONS:
                state.skipped = True
        group_start = False

        if word == b"htmlrtf":
            state.suppressed = number != b"0"
        elif word == b"uc" and number is not None:
            state.unicode_skip = max(0, int(number))
        if state.skipped or state.suppressed:
            continue

        if text is not None or hex_byte is not None:
            chunk = text if text is not None else bytes.fromhex(hex_byte.decode())
            if fallback:
                skipped = min(fallback, len(chunk))
                chunk, fallback = chunk[skipped:], fallback - skipped
            pending.extend(chunk)
            continue
        flush()
        fallback = 0
        if word == b"u" and number is not None:
            parts.append(chr(int(number) % 0x10000))
            fallback = state.unicode_skip
        elif word in _RTF_CHARACTERS:
            parts.append(_RTF_CHARACTERS[word])
        elif symbol in _RTF_SYMBOLS:
            parts.append(_RTF_SYMBOLS[symbol])
    flush()

    # \u writes characters outside the BMP as two surrogates, which the round trip joins.
    result = "".join(parts).replace("\x00", "").encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    if from_html:
        return result.strip() or None, None
    lines = [line.rstrip() for line in result.split("\n")]
    return None, "\n".join(lines).strip() or None
