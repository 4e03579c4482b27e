"""Write small TNEF streams ("winmail.dat") for tests.

The layout follows Microsoft's [MS-OXTNEF]: the signature, a key, then attributes of a level
byte, a 32-bit id (type in the high word), a 32-bit length, the data and a checksum. MAPI property
lists and compressed RTF ([MS-OXRTFCP]) are written here too, so tests never need sample files.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from datetime import datetime, timezone

SIGNATURE = 0x223E9F78
MESSAGE = 0x01
ATTACHMENT = 0x02

# Attribute ids with their TNEF type in the high word.
ATT_TNEF_VERSION = 0x00089006
ATT_OEM_CODEPAGE = 0x00069007
ATT_MESSAGE_CLASS = 0x00078008
ATT_SUBJECT = 0x00018004
ATT_DATE_SENT = 0x00038005
ATT_BODY = 0x0002800C
ATT_MAPI_PROPS = 0x00069003
ATT_ATTACH_REND_DATA = 0x00069002
ATT_ATTACH_TITLE = 0x00018010
ATT_ATTACH_DATA = 0x0006800F
ATT_ATTACHMENT = 0x00069005

# MAPI property types and ids.
PT_SHORT = 0x0002
PT_LONG = 0x0003
PT_BOOLEAN = 0x000B
PT_OBJECT = 0x000D
PT_STRING8 = 0x001E
PT_UNICODE = 0x001F
PT_SYSTIME = 0x0040
PT_BINARY = 0x0102
PT_MV_LONG = 0x1003
PR_SUBJECT = 0x0037
PR_CLIENT_SUBMIT_TIME = 0x0039
PR_SENDER_NAME = 0x0C1A
PR_SENDER_EMAIL_ADDRESS = 0x0C1F
PR_BODY = 0x1000
PR_RTF_COMPRESSED = 0x1009
PR_BODY_HTML = 0x1013
PR_DISPLAY_NAME = 0x3001
PR_ATTACH_DATA = 0x3701
PR_ATTACH_EXTENSION = 0x3703
PR_ATTACH_FILENAME = 0x3704
PR_ATTACH_METHOD = 0x3705
PR_ATTACH_LONG_FILENAME = 0x3707
PR_ATTACH_MIME_TAG = 0x370E
PR_ATTACH_CONTENT_ID = 0x3712
PR_INTERNET_CPID = 0x3FDE
PR_ATTACHMENT_HIDDEN = 0x7FFE

IID_IMESSAGE = bytes.fromhex("0703020000000000c000000000000046")
PS_PUBLIC_STRINGS = bytes.fromhex("2908020000000000c000000000000046")

RTF_PREBUFFER = (
    b"{\\rtf1\\ansi\\mac\\deff0\\deftab720{\\fonttbl;}{\\f0\\fnil \\froman \\fswiss \\fmodern \\fscript "
    b"\\fdecor MS Sans SerifSymbolArialTimes New RomanCourier{\\colortbl\\red0\\green0\\blue0\r\n\\par "
    b"\\pard\\plain\\f0\\fs20\\b\\i\\u\\tab\\tx"
)


@dataclass(frozen=True)
class Prop:
    """One MAPI property. ``name`` makes it a named property with that string name."""

    type: int
    id: int
    value: object
    name: str | None = None


def attribute(level: int, attribute_id: int, data: bytes, checksum: int | None = None) -> bytes:
    if checksum is None:
        checksum = sum(data) & 0xFFFF
    return struct.pack("<BII", level, attribute_id, len(data)) + data + struct.pack("<H", checksum)


def stream(*attributes: bytes, key: int = 0x0001) -> bytes:
    return struct.pack("<IH", SIGNATURE, key) + b"".join(attributes)


def header(code_page: int = 1252) -> bytes:
    """Return the attributes Outlook writes first: the version, the code page and the class."""
    return (
        attribute(MESSAGE, ATT_TNEF_VERSION, struct.pack("<I", 0x00010000))
        + attribute(MESSAGE, ATT_OEM_CODEPAGE, struct.pack("<II", code_page, 0))
        + attribute(MESSAGE, ATT_MESSAGE_CLASS, b"IPM.Microsoft Mail.Note\x00")
    )


def _padded(data: bytes) -> bytes:
    return data + b"\x00" * (-len(data) % 4)


def _value(prop_type: int, value: object) -> bytes:
    if prop_type in (PT_SHORT, PT_BOOLEAN):
        return _padded(struct.pack("<H", value))
    if prop_type == PT_LONG:
        return struct.pack("<I", value)
    if prop_type == PT_SYSTIME:
        return struct.pack("<Q", value)
    if prop_type == PT_UNICODE:
        data = (str(value) + "\x00").encode("utf-16-le")
    elif prop_type == PT_STRING8:
        data = value + b"\x00" if isinstance(value, bytes) else (str(value) + "\x00").encode("cp1252")
    elif prop_type == PT_OBJECT:
        data = value  # the caller puts the interface id first
    else:
        data = value
    return struct.pack("<I", len(data)) + _padded(data)


def properties(*props: Prop) -> bytes:
    """Return a MAPI property list as attMAPIProps and attAttachment carry it."""
    out = [struct.pack("<I", len(props))]
    for prop in props:
        out.append(struct.pack("<HH", prop.type, prop.id))
        if prop.name is not None:
            name = (prop.name + "\x00").encode("utf-16-le")
            out.append(PS_PUBLIC_STRINGS + struct.pack("<II", 1, len(name)) + _padded(name))
        if prop.type & 0x1000:
            values = list(prop.value)
            out.append(struct.pack("<I", len(values)))
            out.extend(_value(prop.type & ~0x1000, value) for value in values)
        elif prop.type in (PT_STRING8, PT_UNICODE, PT_BINARY, PT_OBJECT):
            out.append(struct.pack("<I", 1) + _value(prop.type, prop.value))
        else:
            out.append(_value(prop.type, prop.value))
    return b"".join(out)


def file_attachment(
    data: bytes,
    *,
    title: bytes | None = None,
    props: tuple[Prop, ...] = (),
    legacy_data: bool = True,
) -> bytes:
    """Return the attributes of one attachment, starting with its attAttachRendData.

    A writer can store the data as attAttachData, as the PR_ATTACH_DATA_BIN property, or both.
    ``legacy_data`` writes the first, and a PR_ATTACH_DATA property in ``props`` the second.
    """
    parts = [attribute(ATTACHMENT, ATT_ATTACH_REND_DATA, struct.pack("<HiiiI", 1, -1, 0, 0, 0))]
    if title is not None:
        parts.append(attribute(ATTACHMENT, ATT_ATTACH_TITLE, title + b"\x00"))
    if legacy_data:
        parts.append(attribute(ATTACHMENT, ATT_ATTACH_DATA, data))
    parts.append(attribute(ATTACHMENT, ATT_ATTACHMENT, properties(*props)))
    return b"".join(parts)


def compress_rtf(rtf: bytes) -> bytes:
    """Compress RTF as LZFu, with dictionary references where the text repeats.

    The search is simple and only for the short texts of tests: a match is taken from bytes
    already in the dictionary, never from the run being written.
    """
    assert len(RTF_PREBUFFER) + len(rtf) < 4096, "the test writer handles one dictionary window only"
    dictionary = bytearray(RTF_PREBUFFER)
    out = bytearray()
    position = 0
    finished = False
    while not finished:
        control = 0
        tokens = bytearray()
        for bit in range(8):
            if position >= len(rtf):
                # The end marker: a reference to the current write position.
                control |= 1 << bit
                tokens += struct.pack(">H", len(dictionary) << 4)
                finished = True
                break
            offset, length = _longest_match(dictionary, rtf, position)
            if length >= 2:
                control |= 1 << bit
                tokens += struct.pack(">H", (offset << 4) | (length - 2))
            else:
                length = 1
                tokens.append(rtf[position])
            dictionary += rtf[position:position + length]
            position += length
        out.append(control)
        out += tokens
    crc = zlib.crc32(bytes(out), 0xFFFFFFFF) ^ 0xFFFFFFFF  # [MS-OXRTFCP]: no initial or final inversion
    return struct.pack("<III", len(out) + 12, len(rtf), 0x75465A4C) + struct.pack("<I", crc) + bytes(out)


def _longest_match(dictionary: bytearray, data: bytes, position: int) -> tuple[int, int]:
    best_offset, best_length = 0, 0
    limit = min(17, len(data) - position)
    for offset in range(len(dictionary)):
        length = 0
        while length < limit and offset + length < len(dictionary) and dictionary[offset + length] == data[position + length]:
            length += 1
        if length > best_length:
            best_offset, best_length = offset, length
    return best_offset, best_length


def stored_rtf(rtf: bytes) -> bytes:
    """Return RTF in the uncompressed "MELA" form of PR_RTF_COMPRESSED."""
    return struct.pack("<IIII", len(rtf) + 12, len(rtf), 0x414C454D, 0) + rtf


def windows_filetime(year: int, month: int, day: int, hour: int, minute: int) -> int:
    """Return a UTC time as 100-nanosecond ticks since 1601, the FILETIME of PT_SYSTIME."""
    moment = datetime(year, month, day, hour, minute, tzinfo=timezone.utc)
    epoch = datetime(1601, 1, 1, tzinfo=timezone.utc)
    return int((moment - epoch).total_seconds()) * 10_000_000
