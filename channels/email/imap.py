"""Read new mail from an IMAP folder, resumable from a checkpoint.

The IMAP rules this module relies on (RFC 3501 and RFC 2177):

- A UID names one message in one folder and only grows: a new message always gets a
  UID above every earlier one. UIDs stay valid as long as the folder's UIDVALIDITY is
  unchanged. When the server changes UIDVALIDITY (a rebuilt or recreated folder), every
  UID seen before is meaningless.
- SELECT (EXAMINE here, which is read-only) reports UIDVALIDITY and UIDNEXT, the UID
  the next new message will get. A folder whose UIDNEXT is at most ``last_uid + 1`` has
  nothing new, so no SEARCH is needed.
- ``UID SEARCH UID n:*`` returns the messages with UID >= n. When n is above the
  highest UID, ``*`` means that highest UID and the range reverses, so the server
  returns the last message. The results are therefore filtered again here.
- Another client can expunge a message between SEARCH and FETCH. The FETCH response
  then lacks it, and it is skipped.
- IDLE lets the server push EXISTS/RECENT. Servers may drop a client idle for 30
  minutes, so IDLE is ended and renewed before 29 minutes (here: after 25 at most).
  IDLE reports on the selected folder only, so each reader reads one folder.
- Folder names outside ASCII travel in the modified UTF-7 of RFC 3501 section 5.1.3
  ("Ärger" is ``&AMQ-rger``). IMAPClient (3.x, ``folder_encode`` on by default) encodes
  the ``str`` names passed to it and decodes the names it lists, so this module and its
  callers only ever see Unicode names.

Checkpoint policy: the reader never moves a checkpoint. It yields batches of mail
above ``Checkpoint.last_uid``. The caller stores the messages and commits, and only
then saves a checkpoint with the highest UID of the committed batch. After a crash
before the commit the batch is fetched again, and the inbox ignores what it already
stored by Message-ID. For the same reason the reader can yield the whole folder again
after a UIDVALIDITY change. The folder is
opened read-only and bodies are fetched with BODY.PEEK[], so reading sets no flags. The
one write is ``append``, which files a copy of mail we sent.
"""

from __future__ import annotations

import ast
import contextlib
import imaplib
import logging
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType

from imapclient import SEEN, IMAPClient
from imapclient.exceptions import LoginError

from channels.email.oauth import AccessTokenSource, sign_in_with_token
from channels.errors import ChannelError, describe_network_error

logger = logging.getLogger(__name__)

# RFC 2177 lets servers log out a client idle for 30 minutes, so IDLE is renewed sooner.
MAX_IDLE_SECONDS = 25 * 60
# While idling, the reader wakes this often to check whether a stop was requested.
STOP_CHECK_SECONDS = 0.5


class MailboxError(ChannelError):
    """Connecting to, logging in to or reading the mailbox failed."""


class MailboxAuthError(MailboxError):
    """The server rejected the username or password, so retrying will not help."""


class FolderError(MailboxError):
    """The server rejected opening the folder or appending to it (missing, not selectable, full).

    The login worked, so other folders of the same mailbox can still be read.
    """


@dataclass(frozen=True)
class ImapSettings:
    """Connection settings of one mailbox. ``batch_size`` is the maximum messages per FETCH.

    A batch also ends before its bodies add up to more than ``max_batch_bytes``, so a run
    of large mails is never held in memory at once. A single larger mail is a batch of its
    own. A message larger than ``max_message_bytes`` is fetched as its header only. With
    ``oauth2_tokens`` the reader signs in with XOAUTH2 and ignores ``password``.
    """

    host: str
    port: int
    username: str
    password: str
    use_ssl: bool = True
    folder: str = "INBOX"
    batch_size: int = 50
    max_message_bytes: int = 40 * 1024 * 1024
    max_batch_bytes: int = 64 * 1024 * 1024
    oauth2_tokens: AccessTokenSource | None = None


@dataclass(frozen=True)
class Checkpoint:
    """The last committed position in a folder. ``uidvalidity`` is None before the first read."""

    uidvalidity: int | None
    last_uid: int


@dataclass(frozen=True)
class FetchedMail:
    """One message as stored on the server, with the UID that identifies it there.

    ``truncated`` is True when the message exceeded the size limit and ``raw`` holds only its
    header; ``size`` is then the full size the server reported.
    """

    uid: int
    uidvalidity: int
    raw: bytes
    size: int = 0
    truncated: bool = False


@dataclass(frozen=True)
class _FolderState:
    uidvalidity: int
    uidnext: int | None


class ImapReader:
    """A read-only connection to one IMAP folder.

    Use it as a context manager or call ``connect()`` and ``close()``. Methods raise
    ``MailboxError`` when the server or the network fails, and ``FolderError`` when the
    server rejects the folder. The connection should then be closed and opened again.
    """

    def __init__(self, settings: ImapSettings, timeout: float = 30) -> None:
        if settings.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {settings.batch_size}")
        self._settings = settings
        self._timeout = timeout
        self._client: IMAPClient | None = None
        # Folder state at the last fetch_new, to notice mail that arrived since.
        self._fetched_state: _FolderState | None = None

    def __enter__(self) -> ImapReader:
        self.connect()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def connect(self) -> None:
        """Connect, log in and open the folder read-only.

        Raises ``MailboxAuthError`` when the login is rejected, ``OAuthError`` when no
        access token can be obtained, ``FolderError`` when the folder cannot be opened,
        and ``MailboxError`` for any other failure.
        """
        settings = self._settings
        with self._errors("connect"):
            client = IMAPClient(
                settings.host, port=settings.port, ssl=settings.use_ssl, timeout=self._timeout
            )
        try:
            with self._errors("login"):
                self._sign_in(client)
            self._client = client
            self._select()
        except ChannelError:  # MailboxError, or OAuthError before the sign-in
            self._client = None
            _shutdown_quietly(client)
            raise
        logger.info("IMAP connected to %s:%s folder %s", settings.host, settings.port,
                    settings.folder)

    def _sign_in(self, client: IMAPClient) -> None:
        settings = self._settings
        if settings.oauth2_tokens is None:
            client.login(settings.username, settings.password)
            return
        if not client.has_capability("AUTH=XOAUTH2"):
            raise MailboxAuthError(
                f"IMAP server {settings.host}:{settings.port} does not offer AUTH=XOAUTH2, "
                "so it cannot sign in with OAuth 2.0"
            )
        sign_in_with_token(
            settings.oauth2_tokens,
            lambda token: client.oauth2_login(settings.username, token),
            LoginError,
        )

    def close(self) -> None:
        """Log out and close the connection. Calling it twice is harmless."""
        client, self._client = self._client, None
        self._fetched_state = None
        if client is not None:
            _shutdown_quietly(client)

    @property
    def supports_idle(self) -> bool:
        """Whether the server offers IDLE. Raises ``MailboxError`` when not connected."""
        client = self._connected()
        with self._errors("capability"):
            return bool(client.has_capability("IDLE"))

    def fetch_new(self, checkpoint: Checkpoint) -> Iterator[list[FetchedMail]]:
        """Yield the messages above the checkpoint, in batches, in ascending UID order.

        When the folder's UIDVALIDITY differs from ``checkpoint.uidvalidity`` every
        message is yielded again, from UID 1. Messages expunged between SEARCH and FETCH
        are skipped. Raises ``MailboxError`` from the server or network, possibly after
        some batches were yielded.
        """
        client = self._connected()
        state = self._select()
        self._fetched_state = state

        first_uid = checkpoint.last_uid + 1
        if checkpoint.uidvalidity is not None and checkpoint.uidvalidity != state.uidvalidity:
            logger.warning(
                "IMAP UIDVALIDITY of %s changed from %s to %s: reading the whole folder again",
                self._settings.folder, checkpoint.uidvalidity, state.uidvalidity,
            )
            first_uid = 1
        if state.uidnext is not None and state.uidnext <= first_uid:
            return

        with self._errors("search"):
            found = client.search(["UID", f"{first_uid}:*"])
        uids = sorted(uid for uid in found if uid >= first_uid)
        size = self._settings.batch_size
        for start in range(0, len(uids), size):
            window = uids[start:start + size]
            sizes = self._fetch_sizes(window)
            for group in _split_by_bytes(window, sizes, self._settings.max_message_bytes,
                                         self._settings.max_batch_bytes):
                batch = self._fetch(group, sizes, state.uidvalidity)
                if batch:
                    yield batch

    def wait_for_changes(self, timeout: float, stop: threading.Event | None = None) -> bool:
        """Wait until the server reports new mail, for at most ``timeout`` seconds.

        Returns True at once when mail arrived since the last ``fetch_new``. Otherwise,
        with IDLE it idles up to ``min(timeout, MAX_IDLE_SECONDS)``, or until ``stop`` is
        set, and returns whether the server reported EXISTS or RECENT. Without IDLE it
        sends one NOOP and returns whether that reported new mail, without waiting; the
        caller then polls on its own schedule. Raises ``MailboxError`` from the server
        or network.
        """
        client = self._connected()
        if self._arrived_since_fetch():
            return True

        if not self.supports_idle:
            with self._errors("noop"):
                _, responses = client.noop()
            return _reports_new_mail(responses)

        # NOTE: mail that lands between that SELECT and the start of IDLE may be reported
        # only at the server's next periodic check (Dovecot 2.3: up to 30 seconds later).
        with self._errors("idle"):
            client.idle()
            try:
                responses = _idle_responses(client, min(timeout, MAX_IDLE_SECONDS), stop)
            finally:
                _, done_responses = client.idle_done()
        return _reports_new_mail([*responses, *done_responses])

    def append(self, raw: bytes, when: datetime, *, seen: bool = True) -> None:
        """Append ``raw`` to the open folder with ``when`` as its date, flagged \\Seen if ``seen``.

        Raises ``FolderError`` when the server rejects the APPEND (a full quota, a folder
        that takes no messages) and ``MailboxError`` when the connection fails.
        """
        client = self._connected()
        with self._errors("append", rejected=FolderError):
            client.append(self._settings.folder, raw, flags=(SEEN,) if seen else (), msg_time=when)
        logger.info("IMAP appended a message of %s bytes to %s", len(raw), self._settings.folder)

    def _fetch_sizes(self, uids: list[int]) -> dict[int, int]:
        # Sizes first, so that one huge message is never downloaded, only its header.
        client = self._connected()
        with self._errors("fetch"):
            return {uid: int(data.get(b"RFC822.SIZE", 0)) for uid, data in client.fetch(uids, ["RFC822.SIZE"]).items()}

    def _fetch(self, uids: list[int], sizes: dict[int, int], uidvalidity: int) -> list[FetchedMail]:
        client = self._connected()
        limit = self._settings.max_message_bytes
        whole = [uid for uid in uids if sizes.get(uid, 0) <= limit]
        oversize = [uid for uid in uids if sizes.get(uid, 0) > limit]
        bodies: dict[int, bytes] = {}
        with self._errors("fetch"):
            if whole:
                for uid, data in client.fetch(whole, ["BODY.PEEK[]"]).items():
                    if data.get(b"BODY[]") is not None:
                        bodies[uid] = bytes(data[b"BODY[]"])
            if oversize:
                for uid, data in client.fetch(oversize, ["BODY.PEEK[HEADER]"]).items():
                    if data.get(b"BODY[HEADER]") is not None:
                        bodies[uid] = bytes(data[b"BODY[HEADER]"])

        batch = []
        for uid in uids:
            raw = bodies.get(uid)
            if raw is None:
                logger.info("IMAP UID %s in %s vanished before FETCH: skipped", uid,
                            self._settings.folder)
                continue
            size = sizes.get(uid, len(raw))
            batch.append(FetchedMail(uid=uid, uidvalidity=uidvalidity, raw=raw, size=size,
                                     truncated=uid in oversize))
        return batch

    def _arrived_since_fetch(self) -> bool:
        # A server reports new mail in the response to whatever command runs next. When
        # that was a FETCH, IMAPClient drops the EXISTS, and IDLE alone would miss the
        # mail. A new SELECT shows it through UIDNEXT.
        if self._fetched_state is None:
            return False
        before = self._fetched_state
        now = self._select()
        if now.uidvalidity != before.uidvalidity:
            return True
        if now.uidnext is None or before.uidnext is None:
            return False
        return now.uidnext > before.uidnext

    def _select(self) -> _FolderState:
        client = self._connected()
        with self._errors("select", rejected=FolderError):
            info = client.select_folder(self._settings.folder, readonly=True)
        uidvalidity = info.get(b"UIDVALIDITY")
        if uidvalidity is None:
            # RFC 3501 requires UIDVALIDITY, and without it no checkpoint can be trusted.
            raise MailboxError(f"IMAP server sent no UIDVALIDITY for {self._settings.folder}")
        uidnext = info.get(b"UIDNEXT")
        return _FolderState(
            uidvalidity=int(uidvalidity),
            uidnext=int(uidnext) if uidnext is not None else None,
        )

    def _connected(self) -> IMAPClient:
        if self._client is None:
            raise MailboxError("IMAP reader is not connected: call connect() first")
        return self._client

    def _errors(
        self, operation: str, rejected: type[MailboxError] = MailboxError
    ) -> contextlib.AbstractContextManager[None]:
        return _mailbox_errors(operation, self._settings, rejected)


@contextlib.contextmanager
def _mailbox_errors(
    operation: str, settings: ImapSettings, rejected: type[MailboxError] = MailboxError
) -> Iterator[None]:
    """Raise IMAP, socket and TLS failures of one operation as ``MailboxError``.

    A NO or BAD reply of the server raises ``rejected`` instead. A dropped connection
    (``imaplib.IMAP4.abort``) stays a ``MailboxError``.
    """
    where = f"{settings.host}:{settings.port} folder {settings.folder}"
    try:
        yield
    except LoginError as error:
        raise MailboxAuthError(
            f"IMAP {operation} failed on {where}: the server rejected the sign-in ({_describe(error)})."
            " Check the username and password."
        ) from error
    except imaplib.IMAP4.abort as error:
        raise MailboxError(f"IMAP {operation} failed on {where}: {_describe(error)}") from error
    except imaplib.IMAP4.error as error:
        raise rejected(f"IMAP {operation} failed on {where}: {_describe(error)}") from error
    except OSError as error:
        raise MailboxError(f"IMAP {operation} failed on {where}: {_describe(error)}") from error


def _describe(error: Exception) -> str:
    if isinstance(error, OSError):
        return describe_network_error(error)
    greeting = _SMTP_GREETING.search(str(error))
    if greeting:
        # imaplib's "unexpected response" to a greeting that is not IMAP's "* OK".
        return (
            f"the server greeted as a mail submission (SMTP) server ({greeting.group(1)!r}), "
            "not an IMAP server; check the IMAP port (usually 993, or 143 without TLS)"
        )
    # imaplib passes the server's reply as bytes, and IMAPClient's LoginError carries that
    # reply's repr, so both are shown as text, not as b'...'.
    if len(error.args) == 1 and isinstance(error.args[0], bytes):
        return error.args[0].decode("utf-8", "replace")
    text = str(error)
    if text[:2] in ("b'", 'b"') and text[-1:] == text[1]:
        with contextlib.suppress(ValueError, SyntaxError):
            return ast.literal_eval(text).decode("utf-8", "replace")
    return text


# An SMTP server's greeting, "220 host ...", as imaplib reports it when it expected IMAP's.
_SMTP_GREETING = re.compile(r"unexpected response: b?['\"](220[ -][^'\"]{0,80})")


def _split_by_bytes(
    uids: list[int], sizes: dict[int, int], max_message_bytes: int, max_batch_bytes: int
) -> Iterator[list[int]]:
    """Split ``uids`` into runs whose downloaded bodies stay within ``max_batch_bytes``.

    An oversize message counts as nothing, because only its header is fetched. A UID with no
    size vanished after SEARCH, so it stays in its run and ``_fetch`` skips it.
    """
    group: list[int] = []
    total = 0
    for uid in uids:
        size = sizes.get(uid, 0)
        if size > max_message_bytes:
            size = 0
        if group and total + size > max_batch_bytes:
            yield group
            group, total = [], 0
        group.append(uid)
        total += size
    if group:
        yield group


def _idle_responses(client: IMAPClient, timeout: float, stop: threading.Event | None) -> list:
    # One IDLE command covers the whole wait. Only the local wait is cut into slices.
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or (stop is not None and stop.is_set()):
            return []
        responses = client.idle_check(timeout=min(remaining, STOP_CHECK_SECONDS))
        if responses:
            return responses


def _reports_new_mail(responses: list[tuple[object, ...]]) -> bool:
    for response in responses:
        if len(response) >= 2 and response[1] == b"EXISTS":
            return True
        if len(response) >= 2 and response[1] == b"RECENT" and response[0]:
            return True
    return False


def _shutdown_quietly(client: IMAPClient) -> None:
    # The connection is being dropped anyway, so a failing LOGOUT changes nothing.
    try:
        client.logout()
    except (imaplib.IMAP4.error, OSError) as error:
        logger.debug("IMAP logout failed, closing the socket: %s", error)
        with contextlib.suppress(OSError):
            client.shutdown()
