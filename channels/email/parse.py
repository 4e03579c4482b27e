"""Parse raw RFC 5322 mail into the neutral ``InboundMessage``.

The parser is lenient on purpose: mail from the internet is often malformed, and a
message that cannot be shown perfectly must still reach an agent. Headers are read with
``email.policy.default`` and, where its parser fails, from the raw header text. Only a
message without any usable From address is rejected, because a reply would have no recipient.
"""

from __future__ import annotations

import base64
import binascii
import email
import email.errors
import email.header
import email.policy
import email.utils
import functools
import hashlib
import importlib.util
import logging
import mimetypes
import quopri
import re
from collections.abc import Iterator
from datetime import datetime, timezone
from email.headerregistry import AddressHeader, BaseHeader, DateHeader, HeaderRegistry, ParameterizedMIMEHeader
from email.message import EmailMessage, Message

from channels.email.html import html_to_text, sanitize_html
from channels.email.loops import classify as classify_automatic
from channels.email.quotes import visible_reply
from channels.email.tnef import TnefContent, TnefError, is_tnef, read_tnef
from channels.errors import ParseError
from channels.types import Address, AddressKind, Attachment, ChannelKind, InboundMessage

logger = logging.getLogger(__name__)

_BRACKETED_ID = re.compile(r"<([^<>]*)>")
_SURROGATE = re.compile("[\ud800-\udfff]")
_USABLE_ADDRESS = re.compile(r"^[^\s@<>(),;:]+@[^\s@<>(),;:]+$")
# Last resort for From headers that no parser accepts, e.g. an unterminated quote.
_ADDRESS_IN_TEXT = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_ANGLE_ITEM = re.compile(r"^\s*(?P<name>[^<>]*?)\s*<(?P<address>[^<>]*)>\s*$")
# RFC 5321 limits a path to 256 octets, angle brackets included.
_MAX_ADDRESS_LENGTH = 254
# RFC 5322 limits a line to 998 characters. The limit is counted in UTF-8 bytes because a
# PostgreSQL btree entry is at most 2,704 bytes long. A longer id is replaced by its hash.
_MAX_MESSAGE_ID_BYTES = 998
# The name length limit of common file systems (ext4, NTFS, APFS).
_MAX_FILENAME_LENGTH = 255
# Mail clients often label windows-1252 text as ISO-8859-1, which is why the WHATWG
# Encoding Standard also decodes these labels as windows-1252.
_LATIN1_LABELS = {
    "iso-8859-1", "iso8859-1", "iso_8859-1", "latin1", "latin-1", "l1", "windows-1252", "cp1252"
}
_ASCII_LABELS = {"us-ascii", "ascii", "ansi_x3.4-1968"}
_UTF8_LABELS = {"utf-8", "utf8"}
_UTF8_SEQUENCE = re.compile(rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}")
_BODY_TYPES = ("text/plain", "text/html")
_TNEF_TYPES = {"application/ms-tnef", "application/vnd.ms-tnef"}
_TNEF_FILENAMES = {"winmail.dat", "win.dat"}
_UU_BEGIN = re.compile(r"^begin [0-7]{3,4} (?P<name>\S.*?)\s*$")
# A uuencoded line: a length character, then at most 60 characters (61 with a checksum).
_UU_LINE = re.compile(r"^[ -`][ -`]{0,61}$")


def parse_email(raw: bytes) -> InboundMessage:
    """Parse one raw RFC 5322 message.

    Returns an ``InboundMessage`` whose ``provider_message_id`` is the Message-ID without
    brackets, or ``"sha256:"`` and the hex digest of ``raw`` when the mail has none.
    Raises ``ParseError`` when no usable From address can be found, or when the message
    defeats the parser (for example MIME nested thousands of levels deep).
    """
    try:
        return _parse(raw)
    except ParseError:
        raise
    # Broad on purpose: one hostile mail must become a failed payload for an admin, not an
    # exception that stops the mailbox reader at this message for ever.
    except (RecursionError, Exception) as error:
        raise ParseError(f"the message could not be parsed: {type(error).__name__}: {error}") from error


def parse_emails(raws: list[bytes]) -> list[InboundMessage | str]:
    """Parse each of ``raws`` with ``parse_email``, in a form that crosses a process boundary.

    Returns, in order, the ``InboundMessage`` of each mail or, for one that raised
    ``ParseError``, the error's message. A mail reader runs this in a worker process, so
    that parsing one batch overlaps with storing the batch before it.
    """
    parsed: list[InboundMessage | str] = []
    for raw in raws:
        try:
            parsed.append(parse_email(raw))
        except ParseError as error:
            parsed.append(str(error))
    return parsed


def _parse(raw: bytes) -> InboundMessage:
    message = _parse_structure(raw)

    senders = _addresses(message, "From")
    if not senders:
        raise ParseError("invalid or missing From header: the message has no sender address")

    message_id = strip_brackets(_id_header(message, "Message-ID") or "")
    if not message_id:
        message_id = "sha256:" + hashlib.sha256(raw).hexdigest()
    elif len(message_id.encode()) > _MAX_MESSAGE_ID_BYTES:
        message_id = "sha256:" + hashlib.sha256(message_id.encode()).hexdigest()

    text, html, attachments = _split_body_leniently(message, raw)
    if html is not None:
        if not text:
            text = html_to_text(html)
        html = sanitize_html(html).strip()

    in_reply_to = _message_ids(_id_header(message, "In-Reply-To"))
    loop_check = classify_automatic(message)
    return InboundMessage(
        channel_kind=ChannelKind.EMAIL,
        provider_message_id=message_id,
        sender=senders[0],
        raw=raw,
        raw_format="rfc822",
        recipients=_addresses(message, "To"),
        cc=_addresses(message, "Cc"),
        subject=_header_text(message, "Subject"),
        text=text,
        html=html,
        sent_at=_sent_at(message),
        in_reply_to=in_reply_to[0] if in_reply_to else None,
        references=_message_ids(_id_header(message, "References")),
        attachments=attachments,
        automatic=loop_check.automatic,
        bounce=loop_check.bounce(),
        thread_index=_id_header(message, "Thread-Index"),
        visible_text=visible_reply(text),
    )


def strip_brackets(message_id: str) -> str:
    """Return the Message-ID inside the first ``<...>`` pair, without whitespace.

    A value without brackets is returned stripped; an empty result means no id.
    """
    value = message_id.strip()
    match = _BRACKETED_ID.search(value)
    if match:
        return match.group(1).strip()
    return value.strip("<>").strip()


def decode_bytes(data: bytes, charset: str | None) -> str:
    """Decode text bytes with the declared charset, falling back without losing text.

    The declared charset is tried first, then UTF-8. When both fail, the declared
    charset (or UTF-8 when the label is unknown) decodes with U+FFFD replacement
    characters. Text declared or defaulted as US-ASCII tries UTF-8, then windows-1252,
    and so does text labelled UTF-8 that contains no UTF-8 multi-byte sequence at all.
    """
    label = (charset or "us-ascii").strip().strip('"').lower()
    if label in _LATIN1_LABELS:
        attempts = ["cp1252", "latin-1"]
    elif label in _ASCII_LABELS:
        attempts = ["utf-8", "cp1252"]
    elif label in _UTF8_LABELS and not _UTF8_SEQUENCE.search(data):
        # Old clients labelled their single-byte local text UTF-8. Text with some valid
        # sequences is UTF-8 with stray bytes, and those are replaced below.
        attempts = ["utf-8", "cp1252"]
    else:
        attempts = [label, "utf-8"]
    # ValueError covers UnicodeDecodeError and labels that are not codec names at all.
    for attempt in attempts:
        try:
            return _clean_text(data.decode(attempt), header=False)
        except (LookupError, ValueError):
            continue
    try:
        return _clean_text(data.decode(label, errors="replace"), header=False)
    except (LookupError, ValueError):
        return _clean_text(data.decode("utf-8", errors="replace"), header=False)


class _CachedHeaderRegistry(HeaderRegistry):
    """The default header registry, remembering the headers it parsed most recently.

    ``email.policy.default`` parses a header anew on every access, and the MIME walk reads
    each part's Content-Type several times; most of the parse time went there. Parsed
    headers are read-only, so one object can serve every access to the same name and value,
    also across messages (``Content-Type: text/plain; charset="utf-8"`` repeats in most).
    """

    @functools.lru_cache(maxsize=4096)
    def __call__(self, name: str, value: str) -> BaseHeader:
        header_class = self.registry.get(name.lower(), self.default_class)
        text = _plain_mime_text(name, value)
        if text is None or not issubclass(header_class, ParameterizedMIMEHeader):
            return super().__call__(name, value)
        header = str.__new__(_deferred_class(header_class), text)
        header._name = name
        vars(header)["_source"] = value
        return header


class _DeferredParse:
    """A Content-Type or Content-Disposition header whose parse runs when first needed.

    ``email.message.Message`` reads these headers as text: the content type, boundary,
    charset and filename come from ``str(header)``. A boundary or filename makes most values
    unique, so the cache above rarely helped, and their parse took about a quarter of the
    parse time of the import benchmark's mail (measured once). For a plain value,
    ``_plain_mime_text`` returns the text that the parse would give. The parse tree, params
    and defects come from the stdlib parser of the original value (``_source``) when first
    read.
    """

    def __getattr__(self, attribute: str) -> object:
        if attribute.startswith("__") or attribute in ("_name", "_source") or "_parsed" in vars(self):
            raise AttributeError(attribute)
        vars(self)["_parsed"] = True
        fields: dict[str, object] = {"defects": []}
        type(self).parse(self._source, fields)
        del fields["decoded"]
        self.init(self._name, **fields)
        return getattr(self, attribute)


@functools.cache
def _deferred_class(header_class: type) -> type:
    return type("_Deferred" + header_class.__name__, (_DeferredParse, header_class, BaseHeader), {})


_MIME_TOKEN = r"[A-Za-z0-9!#$&+.^_`{|}~-]+"
_MIME_PARAMETER = re.compile(rf';[ \t]*({_MIME_TOKEN})=(?:({_MIME_TOKEN})|"([ !#-\[\]-~]+)")')
# Plain ASCII values: a type/subtype or a disposition, then parameters whose value is a token
# or a non-empty quoted string. Comments, quoted pairs, encoded words, RFC 2231 parameters,
# repeated names and whitespace anywhere but after ";" take the stdlib path.
_PLAIN_MIME_VALUES = {
    "content-type": re.compile(rf"(?!.*=\?){_MIME_TOKEN}/{_MIME_TOKEN}(?:{_MIME_PARAMETER.pattern})*"),
    "content-disposition": re.compile(rf"(?!.*=\?){_MIME_TOKEN}(?:{_MIME_PARAMETER.pattern})*"),
}


def _plain_mime_text(name: str, value: str) -> str | None:
    """Return the text of the stdlib parse of a plain MIME header value, or None for others.

    The stdlib writes the parameters anew, each as ``; name="value"``. The tests in
    tests/channels/test_email_parse_fast_paths.py compare this with the stdlib on the corpus
    and on random values.
    """
    plain = _PLAIN_MIME_VALUES.get(name.lower())
    if plain is None or not plain.fullmatch(value):
        return None
    head = value.split(";", 1)[0]
    parameters = _MIME_PARAMETER.findall(value)
    if len({parameter.lower() for parameter, _, _ in parameters}) < len(parameters):
        return None
    return head + "".join(f'; {parameter}="{token or quoted}"' for parameter, token, quoted in parameters)


_POLICY = email.policy.default.clone(header_factory=_CachedHeaderRegistry())


class _BoundaryMatcher:
    """A boundary line test equal to the regular expression the stdlib feed parser compiles.

    That expression is the literal separator followed by ``_BOUNDARY_LINE_END``, so a prefix
    test and the end pattern give the same result and the same ``end`` and ``linesep``
    groups, the only ones the feed parser reads.
    """

    def __init__(self, separator: str) -> None:
        self._separator = separator

    def match(self, line: str) -> re.Match[str] | None:
        if not line.startswith(self._separator):
            return None
        return _BOUNDARY_LINE_END.match(line, len(self._separator))


class _FeedParserRe:
    """The ``re`` module of the private copy of the feed parser.

    Python 3.11's feed parser compiles a new expression for the boundary of each multipart
    part, and with boundaries unique per mail the compile took about a tenth of the parse
    time of the import benchmark's mail. Boundary patterns become a ``_BoundaryMatcher``.
    Any other pattern, or one whose separator does not escape back to the same text, is
    compiled as usual.
    """

    def __getattr__(self, name: str) -> object:
        return getattr(re, name)

    @staticmethod
    def compile(pattern: str, flags: int = 0) -> re.Pattern[str] | _BoundaryMatcher:
        if flags == 0 and pattern.startswith(_BOUNDARY_START) and pattern.endswith(_BOUNDARY_END):
            escaped = pattern[len(_BOUNDARY_START):-len(_BOUNDARY_END)]
            separator = _ESCAPED_CHARACTER.sub(lambda match: match.group(1), escaped)
            if re.escape(separator) == escaped:
                return _BoundaryMatcher(separator)
        return re.compile(pattern, flags)


# The boundary expression of the stdlib feed parser (Python 3.11), around the escaped separator.
_BOUNDARY_START = "(?P<sep>"
_BOUNDARY_END = r")(?P<end>--)?(?P<ws>[ \t]*)(?P<linesep>\r\n|\r|\n)?$"
_BOUNDARY_LINE_END = re.compile(_BOUNDARY_END[1:])
_ESCAPED_CHARACTER = re.compile(r"\\(.)", re.DOTALL)
# The stdlib parser reads its input in chunks of this many characters.
_FEED_CHUNK = 8192


@functools.cache
def _feed_parser_class() -> type:
    """Return ``FeedParser`` of a private copy of ``email.feedparser`` that uses ``_FeedParserRe``.

    The copy runs the stdlib's own code, so its results are the stdlib parser's. Other
    users of the ``email`` package keep the original module.
    """
    spec = importlib.util.find_spec("email.feedparser")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.re = _FeedParserRe()
    return module.FeedParser


def _message_from_bytes(raw: bytes, policy: email.policy.Policy) -> Message:
    """Parse ``raw`` as ``email.message_from_bytes`` does, with the private feed parser."""
    parser = _feed_parser_class()(policy=policy)
    text = raw.decode("ascii", "surrogateescape")
    for start in range(0, len(text), _FEED_CHUNK):
        parser.feed(text[start:start + _FEED_CHUNK])
    return parser.close()


def _parse_structure(raw: bytes) -> Message:
    try:
        return _message_from_bytes(raw, _POLICY)
    # Broad on purpose: the parser reads Content-Type through the header registry, which
    # fails as in _header_text. compat32 keeps headers as plain strings.
    except Exception as error:
        logger.info("MIME structure failed to parse (%s): retrying with compat32", error)
        return email.message_from_bytes(raw, policy=email.policy.compat32)


def _header_text(part: Message, name: str) -> str | None:
    """Return a header's decoded value, or None when the header is absent."""
    raw = _raw_header(part, name)
    if raw is None:
        return None
    if "=?" not in raw:
        # Without encoded words there is nothing to decode, and the header registry's parse
        # of the Subject alone took about a seventh of the parse time of the import
        # benchmark's mail (measured once).
        return " ".join(_clean_text(raw).split())
    if not isinstance(part, EmailMessage):
        # compat32 leaves RFC 2047 words encoded.
        return _decode_raw_header(raw)
    try:
        value = part.get(name)
    # Broad on purpose: the header registry raises IndexError, AttributeError and others
    # on malformed values, and the raw text below still contains what the sender wrote.
    except Exception:
        return _decode_raw_header(raw)
    text = str(value)
    if "\ufffd" in text and _SURROGATE.search(raw):
        # The registry replaces raw 8-bit bytes; _clean_text decodes them instead.
        return _decode_raw_header(raw)
    # Encoded words can smuggle CR/LF in; a header value is one line.
    return " ".join(_clean_text(text).split())


def _id_header(part: Message, name: str) -> str | None:
    """Return a header that contains ids or tokens, such as Message-ID, as one line of text.

    Ids cannot contain encoded words, so the raw value serves, and it skips the header
    registry, whose Message-ID parser took about a sixth of the parse time of the import
    benchmark's mail (measured once).
    """
    raw = _raw_header(part, name)
    if raw is None:
        return None
    return " ".join(_clean_text(raw).split())


def _raw_header(part: Message, name: str) -> str | None:
    for key, value in part.raw_items():
        if key.lower() == name.lower():
            return value
    return None


def _decode_raw_header(value: str) -> str:
    """Decode RFC 2047 words in a raw header value, replacing what cannot be decoded."""
    value = _clean_text(value)
    try:
        chunks = email.header.decode_header(value)
    except (email.errors.HeaderParseError, ValueError):
        return " ".join(value.split())
    decoded = []
    for chunk, charset in chunks:
        decoded.append(chunk if isinstance(chunk, str) else decode_bytes(chunk, charset or "utf-8"))
    return " ".join("".join(decoded).split())


def _decode_raw_address_header(value: str) -> str:
    """Decode RFC 2047 words in a raw address header, each into a quoted string.

    In an address header an encoded word may stand only in a display name or a comment
    (RFC 2047, section 5), never in an address. Quoting its decoded text keeps a comma,
    colon, angle bracket or address in it from being read as address syntax, so that a
    name such as "Eve\\r\\nBcc: victim@example.com" cannot replace the sender's address.
    """
    value = _clean_text(value)
    try:
        chunks = email.header.decode_header(value)
    except (email.errors.HeaderParseError, ValueError):
        return " ".join(value.split())
    parts = []
    for chunk, charset in chunks:
        text = chunk if isinstance(chunk, str) else decode_bytes(chunk, charset or "utf-8")
        if charset is not None:
            text = " ".join(text.split())
            text = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
        parts.append(text)
    return " ".join("".join(parts).split())


def _clean_text(value: str, *, header: bool = True) -> str:
    """Return ``value`` as valid Unicode without NUL characters.

    Raw 8-bit header bytes arrive as surrogate escapes and are decoded as UTF-8, the only
    8-bit charset RFC 6532 allows in headers. In a header, bytes that are not UTF-8 come
    from older clients that wrote their local charset unlabelled, most often windows-1252,
    so they decode as that. Other lone surrogates and NUL, which the database and the HTML
    sanitizer reject, are replaced.
    """
    if _SURROGATE.search(value):
        try:
            encoded = value.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            encoded = value.encode("utf-8", "replace")
        try:
            value = encoded.decode("utf-8")
        except UnicodeDecodeError:
            value = encoded.decode("cp1252" if header else "utf-8", "replace")
    return value.replace("\x00", "\ufffd")


def _addresses(message: Message, name: str) -> list[Address]:
    """Return the usable addresses of an address header, trying ever more lenient parsers."""
    pairs: list[tuple[str, str]] = []
    invalid = False
    try:
        header = message.get(name)
        if isinstance(header, AddressHeader):
            pairs = [(item.display_name, item.addr_spec) for item in header.addresses]
            invalid = any(isinstance(defect, email.errors.InvalidHeaderDefect) for defect in header.defects)
    except Exception:  # same malformed-header failures as in _header_text
        pairs = []
    found = _usable_addresses(pairs)
    raw = _raw_header(message, name)
    if raw is not None and _SURROGATE.search(raw) and any("\ufffd" in item[0] for item in pairs):
        # Raw 8-bit bytes in a display name, which the registry replaces.
        found = _usable_addresses(email.utils.getaddresses([_decode_raw_address_header(raw)])) or found
    elif invalid and raw is not None:
        # In "alice@example.com <bob@example.com>" the registry takes the unquoted phrase
        # as the address, but mail clients show it as the name and reply to the bracketed one.
        bracketed = _usable_addresses(_angle_addresses(_decode_raw_address_header(raw)))
        changed = {item.value for item in bracketed} != {item.value for item in found}
        if found and changed and len(bracketed) >= len(found):
            found = bracketed
    if found:
        return found

    if raw is None:
        return []
    decoded = _decode_raw_address_header(raw)
    found = _usable_addresses(email.utils.getaddresses([decoded]))
    if found:
        return found
    matches = _ADDRESS_IN_TEXT.findall(decoded)
    return [
        Address(AddressKind.EMAIL, match.lower())
        for match in matches
        if len(match) <= _MAX_ADDRESS_LENGTH
    ]


def _angle_addresses(value: str) -> list[tuple[str, str]]:
    """Split an address list at commas outside quotes and angle brackets, reading each item
    as ``name <address>`` or a bare address, without any other RFC 5322 syntax."""
    items, current, quoted, angled = [], [], False, False
    for char in value:
        if char == '"' and not angled:
            quoted = not quoted
        elif char == "<" and not quoted:
            angled = True
        elif char == ">" and not quoted:
            angled = False
        if char == "," and not quoted and not angled:
            items.append("".join(current))
            current = []
        else:
            current.append(char)
    items.append("".join(current))

    pairs = []
    for item in items:
        match = _ANGLE_ITEM.match(item)
        if match:
            pairs.append((match.group("name").strip().strip('"').strip(), match.group("address").strip()))
        elif item.strip():
            pairs.append(("", item.strip()))
    return pairs


def _usable_addresses(pairs: list[tuple[str, str]]) -> list[Address]:
    result = []
    for display_name, addr_spec in pairs:
        addr_spec = _clean_text(addr_spec).strip()
        if len(addr_spec) > _MAX_ADDRESS_LENGTH or not _USABLE_ADDRESS.match(addr_spec):
            continue
        name = _clean_text(display_name or "").strip() or None
        result.append(Address(AddressKind.EMAIL, addr_spec.lower(), name))
    return result


def _message_ids(value: str | None) -> list[str]:
    """Return the bracket-stripped ids of an In-Reply-To or References value, in order."""
    if not value:
        return []
    ids = [found.strip() for found in _BRACKETED_ID.findall(value)]
    if not ids:
        # Some clients omit the brackets. Words without "@" are comments, not ids.
        ids = [strip_brackets(word) for word in value.split() if "@" in word]
    return list(dict.fromkeys(item for item in ids if item))


def _sent_at(message: Message) -> datetime | None:
    value: datetime | None = None
    try:
        header = message.get("Date")
        if isinstance(header, DateHeader):
            value = header.datetime
        elif header is not None:
            value = email.utils.parsedate_to_datetime(str(header))
    except Exception:  # same malformed-header failures as in _header_text
        return None
    if value is None:
        return None
    # A "-0000" zone gives a naive datetime. RFC 5322 says that time is UTC, local zone unknown.
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    try:
        return value.astimezone(timezone.utc)
    except (OverflowError, ValueError):
        return None


def _split_body_leniently(
    message: Message, raw: bytes
) -> tuple[str, str | None, list[Attachment]]:
    """Return the body and attachments, retrying with simpler parsers on malformed MIME."""
    try:
        return _split_body(message)
    # Broad on purpose: MIME headers such as Content-Disposition are parsed on access,
    # with the same failures as in _header_text. compat32 keeps them as plain strings.
    except Exception as error:
        logger.info("MIME structure failed to parse (%s): retrying with compat32", error)
    try:
        return _split_body(email.message_from_bytes(raw, policy=email.policy.compat32))
    except Exception as error:  # the fallback below decodes with replacement and does not raise
        logger.warning("MIME structure failed to parse (%s): keeping the raw body as text", error)
    body = re.split(rb"\r?\n\r?\n", raw, maxsplit=1)[-1]
    return decode_bytes(body, "utf-8"), None, []


def _split_body(message: Message) -> tuple[str, str | None, list[Attachment]]:
    """Return the plain text, the unsanitized HTML and the attachments of a message.

    The first inline text/plain and text/html parts are the body. Clients split a body
    around an inline image into several parts of a multipart/mixed, so further inline
    text parts are appended. Unchosen alternatives are dropped because they repeat the
    body. Uuencoded files in plain text and the contents of TNEF (winmail.dat) parts become
    attachments, and a TNEF body is the body of a mail that has none of its own. Every other
    leaf part is an attachment.
    """
    bodies: dict[str, list[str]] = {kind: [] for kind in _BODY_TYPES}
    attachments: list[Attachment] = []
    tnef_contents: list[TnefContent] = []
    for index, (part, parent_subtype) in enumerate(_leaves(message, ""), start=1):
        kind = _effective_type(part)
        if kind in _BODY_TYPES and _is_inline_text(part):
            if not bodies[kind] or parent_subtype != "alternative":
                decoded = decode_bytes(_payload(part), part.get_content_charset())
                if kind == "text/plain":
                    decoded, files = _extract_uuencoded(decoded, index)
                    attachments.extend(files)
                bodies[kind].append(decoded.rstrip())
            continue
        attachment = _attachment(part, index)
        unpacked = _unpack_tnef(attachment, index)
        if unpacked is None:
            attachments.append(attachment)
        else:
            attachments.extend(unpacked[0])
            tnef_contents.append(unpacked[1])

    text = "\n".join(bodies["text/plain"])
    html = "\n".join(bodies["text/html"]) if bodies["text/html"] else None
    if not text.strip() and not (html or "").strip():
        text, html = _tnef_body(tnef_contents, text, html)
    return text, html, attachments


def _leaves(part: Message, parent_subtype: str) -> Iterator[tuple[Message, str]]:
    """Yield every non-multipart part with the subtype of its parent multipart."""
    if part.get_content_maintype() == "multipart" and part.is_multipart():
        subtype = part.get_content_subtype()
        for child in part.get_payload():
            if isinstance(child, Message):
                yield from _leaves(child, subtype)
        return
    yield part, parent_subtype


def _effective_type(part: Message) -> str:
    # A multipart without a boundary parses as one text blob; show it rather than lose it.
    if part.get_content_maintype() == "multipart":
        return "text/plain"
    return part.get_content_type()


def _is_inline_text(part: Message) -> bool:
    if part.get_content_disposition() == "attachment":
        return False
    try:
        return not part.get_filename()
    except Exception:  # same malformed-header failures as in _header_text
        return True


def _payload(part: Message) -> bytes:
    payload = part.get_payload(decode=True)
    return payload if isinstance(payload, bytes) else b""


def _attachment(part: Message, index: int) -> Attachment:
    # The type comes from the sender: NUL and lone surrogates would break the database.
    content_type = _clean_text(part.get_content_type()).replace("\ufffd", "")
    if part.get_content_maintype() == "message" and part.is_multipart():
        data = _inner_message_bytes(part)
    else:
        data = _payload(part)

    content_id = strip_brackets(_id_header(part, "Content-ID") or "") or None
    disposition = part.get_content_disposition()
    return Attachment(
        filename=_filename(part, content_type, index),
        content_type=content_type,
        data=data,
        content_id=content_id,
        inline=disposition == "inline" or (disposition is None and content_id is not None),
    )


def _inner_message_bytes(part: Message) -> bytes:
    inner = part.get_payload(0)
    if not isinstance(inner, Message):
        return _payload(part)
    try:
        data = inner.as_bytes()
    except Exception:  # the generator can fail on the same malformed headers
        data = inner.as_string().encode("utf-8", "surrogateescape")

    # RFC 2046 forbids encoding a message/rfc822 part, but some clients base64-encode it.
    # The stdlib then parses the encoded text as a message with no headers.
    encoding = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
    if encoding == "base64":
        try:
            return base64.b64decode(data, validate=False)
        except binascii.Error:  # bad padding: keep what was received
            return data
    if encoding == "quoted-printable":
        return quopri.decodestring(data)
    return data


def _raw_filename(part: Message) -> str | None:
    """Return the filename read from the raw headers, decoding 8-bit bytes as header text."""
    headers = Message()  # compat32, which takes the already decoded text as it is
    for key, value in part.raw_items():
        if key.lower() in ("content-disposition", "content-type"):
            headers[key] = _clean_text(value)
    try:
        return headers.get_filename()
    except Exception:  # same malformed-header failures as in _header_text
        return None


def _filename(part: Message, content_type: str, index: int) -> str:
    """Return the part's filename without directories or control characters.

    Parts without a usable name get ``attachment-<index>`` and an extension guessed
    from the content type.
    """
    try:
        name = part.get_filename() or ""
    except Exception:  # same malformed-header failures as in _header_text
        name = ""
    if "\ufffd" in name:
        name = _raw_filename(part) or name
    return _safe_filename(name, content_type, str(index))


def _safe_filename(name: str, content_type: str, number: str) -> str:
    """Return ``name`` without directories or control characters, at most 255 characters long.

    An empty name becomes ``attachment-<number>`` and an extension guessed from the content type.
    """
    name = _clean_text(name)
    if "=?" in name:
        name = _decode_raw_header(name)
    name = re.split(r"[/\\]", name)[-1]
    name = "".join(char for char in name if char.isprintable()).strip()
    if name in ("", ".", ".."):
        if content_type == "message/rfc822":
            extension = ".eml"
        else:
            extension = mimetypes.guess_extension(content_type) or ".bin"
        name = f"attachment-{number}{extension}"
    if len(name) > _MAX_FILENAME_LENGTH:
        stem, dot, extension = name.rpartition(".")
        if not dot or len(extension) > 16:
            stem, extension = name, ""
        name = stem[: _MAX_FILENAME_LENGTH - len(dot + extension)] + dot + extension
    return name


def _unpack_tnef(attachment: Attachment, index: int) -> tuple[list[Attachment], TnefContent] | None:
    """Return the files and the body inside a TNEF attachment, or None to keep it as it is."""
    named = attachment.filename.lower() in _TNEF_FILENAMES
    if (attachment.content_type not in _TNEF_TYPES and not named) or not is_tnef(attachment.data):
        return None
    try:
        content = read_tnef(attachment.data)
    except TnefError as error:
        logger.info("TNEF attachment kept as it is: %s", error)
        return None
    # Broad on purpose: a flaw in the TNEF reader must cost the mail nothing, and the part
    # as it arrived is still a useful attachment.
    except Exception:
        logger.warning("TNEF attachment kept as it is: the reader failed", exc_info=True)
        return None

    files = [
        Attachment(
            filename=_safe_filename(file.filename, file.content_type, f"{index}-{number}"),
            content_type=file.content_type,
            data=file.data,
            content_id=strip_brackets(file.content_id or "") or None,
            inline=file.hidden and bool(file.content_id),
        )
        for number, file in enumerate(content.files, start=1)
    ]
    return files, content


def _tnef_body(
    contents: list[TnefContent], text: str, html: str | None
) -> tuple[str, str | None]:
    """Return the first TNEF body, or ``text`` and ``html`` unchanged when no TNEF part has one."""
    for content in contents:
        if content.text or content.html:
            tnef_html = None if content.html is None else _clean_text(content.html, header=False)
            return _clean_text(content.text or "", header=False), tnef_html
    return text, html


def _extract_uuencoded(text: str, index: int) -> tuple[str, list[Attachment]]:
    """Move uuencoded files ("begin 644 name" to "end") from plain text into attachments.

    The text around each file stays, with one blank line where the file was. A block without
    its "end" line, or with a line that is not uuencoded, stays in the text as it is.
    """
    if "begin " not in text:
        return text, []
    lines = text.splitlines(keepends=True)
    kept: list[str] = []
    files: list[Attachment] = []
    position = 0
    while position < len(lines):
        match = _UU_BEGIN.match(lines[position].rstrip("\r\n"))
        block = _uu_block(lines, position) if match else None
        if match is None or block is None:
            kept.append(lines[position])
            position += 1
            continue

        data, end = block
        name = match.group("name")
        content_type = mimetypes.guess_type(name, strict=False)[0] or "application/octet-stream"
        number = f"{index}-{len(files) + 1}"
        files.append(Attachment(_safe_filename(name, content_type, number), content_type, data))
        position = end + 1
        if (not kept or not kept[-1].strip()) and position < len(lines) and not lines[position].strip():
            position += 1  # the blank lines around the file become one
    return "".join(kept), files


def _uu_block(lines: list[str], begin: int) -> tuple[bytes, int] | None:
    """Return the data of the uuencoded block after line ``begin`` and its "end" line's index."""
    data = bytearray()
    for position in range(begin + 1, len(lines)):
        line = lines[position].rstrip("\r\n")
        if line == "end":
            return bytes(data), position
        # Mail transports strip trailing spaces, and a space encodes zero bits like "`".
        line = line or "`"
        if not _UU_LINE.match(line):
            return None
        length = (ord(line[0]) - 32) & 0x3F
        width = (length + 2) // 3 * 4
        encoded = line[1:1 + width].ljust(width, "`")
        try:
            data += binascii.a2b_uu(line[0] + encoded)[:length]
        except binascii.Error:
            return None
    return None
