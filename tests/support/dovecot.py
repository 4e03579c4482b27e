"""A throwaway Dovecot IMAP server on loopback, for tests of the IMAP reader.

Everything lives in a temporary folder: the configuration, a passwd-file with one user
and a ``{PLAIN}`` password, the maildir (owned by ``nobody``, whom the static userdb
maps every user to), the runtime sockets and the log. The server listens on a free
127.0.0.1 port without TLS. It needs Debian's ``dovecot-imapd`` and root, as the
privileged auth and master processes do.

Stopping takes Dovecot a few seconds, so tests can share one server and keep apart
by folder::

    with DovecotServer() as server:
        server.create_folder("Case1")
        server.append(raw_mail, folder="Case1")
        reader = ImapReader(server.settings(folder="Case1"))
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from imapclient import IMAPClient

from channels.email.imap import ImapSettings
from tests.support.components import require

_STARTUP_TIMEOUT = 20.0
_APPENDUID = re.compile(rb"\[APPENDUID \d+ (\d+)\]")

_CONFIG = """\
protocols = imap
listen = 127.0.0.1
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
info_log_path = {root}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
# No delay after a failed login, so a wrong-password test does not stall the others.
auth_failure_delay = 0
default_login_user = dovenull
mail_location = maildir:{root}/mail/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={root}/home/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
  # Mode 0 turns off the growing auth penalty for an IP after failed logins.
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service auth {{
  user = root
}}
{extra}
"""

# Dovecot 2.3 checks XOAUTH2 and OAUTHBEARER tokens with the oauth2 passdb; the passwd-file
# passdb above keeps serving PLAIN and LOGIN. A later auth_mechanisms line replaces the first.
_OAUTH2_CONFIG = """
auth_mechanisms = plain login xoauth2 oauthbearer
passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {root}/oauth2.conf.ext
}}
"""


def require_dovecot() -> None:
    """Skip the calling test when Dovecot cannot run here, or fail it when CI=true."""
    missing = [name for name in ("dovecot", "doveadm") if _find_binary(name) is None]
    if missing:
        require(False, f"{' and '.join(missing)} not found: install Debian's dovecot-imapd")
    # The auth and master processes of this configuration need root.
    require(os.geteuid() == 0, "the test Dovecot must run as root")


def _find_binary(name: str) -> str | None:
    # /usr/sbin is missing from PATH in some non-login shells.
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class DovecotServer:
    """A Dovecot instance with one user, started on a free loopback port.

    ``extra_config`` is appended to the generated configuration, for example an
    ``imap_capability`` line that hides IDLE. With ``oauth2_tokeninfo_url`` the server
    also accepts XOAUTH2 and OAUTHBEARER sign-ins, and checks each access token by a GET of
    that URL with the token appended (see ``tests.support.oauth_server``).
    """

    host = "127.0.0.1"

    def __init__(
        self,
        username: str = "support@shop.example",
        password: str = "imap-test-password",
        extra_config: str = "",
        oauth2_tokeninfo_url: str | None = None,
    ) -> None:
        self.username = username
        self.password = password
        self.port = 0
        self._extra_config = extra_config
        self._oauth2_tokeninfo_url = oauth2_tokeninfo_url
        self._root: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._stderr: BinaryIO | None = None

    def __enter__(self) -> DovecotServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def config_file(self) -> Path:
        if self._root is None:
            raise RuntimeError("the Dovecot server is not started")
        return self._root / "dovecot.conf"

    def start(self) -> None:
        """Write the configuration, start Dovecot and wait until its port accepts."""
        require_dovecot()
        self._root = Path(tempfile.mkdtemp(prefix="sb-dovecot-"))
        # mkdtemp creates mode 0700, but the mail processes run as nobody and must enter it.
        self._root.chmod(0o755)
        mail_dir = self._root / "mail"
        mail_dir.mkdir()
        shutil.chown(mail_dir, user="nobody", group="nogroup")
        (self._root / "passwd").write_text(f"{self.username}:{{PLAIN}}{self.password}::::::\n")

        self.port = _free_port()
        extra = self._extra_config
        if self._oauth2_tokeninfo_url is not None:
            extra += self._write_oauth2_config(self._root, self._oauth2_tokeninfo_url)
        self.config_file.write_text(_CONFIG.format(root=self._root, port=self.port, extra=extra))
        # -F keeps the master in the foreground, so stop() can wait for it to exit.
        self._stderr = (self._root / "stderr.log").open("wb")
        self._process = subprocess.Popen(
            [_find_binary("dovecot") or "dovecot", "-F", "-c", str(self.config_file)],
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
        )
        try:
            self._wait_until_listening()
        except RuntimeError as error:
            details = self._startup_errors()
            self.stop()
            raise RuntimeError(f"{error}: {details}") from None

    def stop(self) -> None:
        """Stop Dovecot and delete its folder. Calling it twice is harmless."""
        if self._process is not None:
            # SIGTERM to the master stops it as `doveadm stop` does, without that
            # command's wait of about three seconds before it returns.
            self._process.terminate()
            try:
                self._process.wait(timeout=_STARTUP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = None

    def settings(self, **overrides: object) -> ImapSettings:
        """Return reader settings for this server; keyword arguments override fields."""
        values: dict[str, object] = {
            "host": self.host,
            "port": self.port,
            "username": self.username,
            "password": self.password,
            "use_ssl": False,
        }
        values.update(overrides)
        return ImapSettings(**values)  # type: ignore[arg-type]

    def client(self) -> IMAPClient:
        """Return a new logged-in IMAPClient; the caller logs out."""
        client = IMAPClient(self.host, port=self.port, ssl=False, timeout=_STARTUP_TIMEOUT)
        client.login(self.username, self.password)
        return client

    def append(self, raw: bytes, folder: str = "INBOX") -> int:
        """Append one message over a separate connection and return its UID."""
        client = self.client()
        try:
            response = client.append(folder, raw)
        finally:
            client.logout()
        match = _APPENDUID.search(response)
        if match is None:
            raise RuntimeError(f"APPEND response has no APPENDUID: {response!r}")
        return int(match.group(1))

    def flags(self, folder: str = "INBOX") -> list[tuple[bytes, ...]]:
        """Return the flags of each message in a folder, in UID order, without changing them."""
        client = self.client()
        try:
            client.select_folder(folder, readonly=True)
            fetched = client.fetch("1:*", ["FLAGS"]) if client.search(["ALL"]) else {}
        finally:
            client.logout()
        return [fetched[uid][b"FLAGS"] for uid in sorted(fetched)]

    def create_folder(self, folder: str) -> None:
        """Create an empty folder, so that tests sharing one server stay apart."""
        client = self.client()
        try:
            client.create_folder(folder)
        finally:
            client.logout()

    def expunge(self, uids: list[int], folder: str = "INBOX") -> None:
        """Delete the messages with these UIDs from a folder."""
        client = self.client()
        try:
            client.select_folder(folder)
            client.delete_messages(uids)
            client.expunge()
        finally:
            client.logout()

    def expunge_all(self, folder: str = "INBOX") -> None:
        """Delete every message of a folder."""
        client = self.client()
        try:
            client.select_folder(folder)
            uids = client.search(["ALL"])
            if uids:
                client.delete_messages(uids)
                client.expunge()
        finally:
            client.logout()

    def set_uidvalidity(self, value: int, folder: str = "INBOX") -> None:
        """Change a folder's UIDVALIDITY with doveadm, as a mailbox rebuild would."""
        subprocess.run(
            [
                _find_binary("doveadm") or "doveadm", "-c", str(self.config_file),
                "mailbox", "update", "-u", self.username, "--uid-validity", str(value), folder,
            ],
            check=True,
            capture_output=True,
        )

    @staticmethod
    def _write_oauth2_config(root: Path, tokeninfo_url: str) -> str:
        """Write the oauth2 passdb's settings file and return the lines that enable it."""
        (root / "oauth2.conf.ext").write_text(
            f"tokeninfo_url = {tokeninfo_url}\nusername_attribute = email\n"
        )
        return _OAUTH2_CONFIG.format(root=root)

    def _wait_until_listening(self) -> None:
        deadline = time.monotonic() + _STARTUP_TIMEOUT
        while True:
            if self._process is not None and self._process.poll() is not None:
                raise RuntimeError("Dovecot exited at startup")
            try:
                with socket.create_connection((self.host, self.port), timeout=1):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"Dovecot did not listen on port {self.port}") from None
                # Dovecot signals readiness only by accepting connections, so poll the port.
                time.sleep(0.05)

    def _startup_errors(self) -> str:
        if self._root is None:
            return ""
        logs = [self._root / "stderr.log", self._root / "dovecot.log"]
        return " ".join(path.read_text(errors="replace")[-2000:] for path in logs if path.exists())


# Folder names with "/" between levels, as Gmail and many hosted servers show them. Dovecot's
# own default separator is ".", which makes "Support/Ärger" an invalid name.
SLASH_SEPARATOR_CONFIG = """\
namespace inbox {
  inbox = yes
  separator = /
}
"""


def copy_mail(server: DovecotServer, uids: list[int], source: str, target: str) -> None:
    """Copy messages between folders with IMAP COPY, as a mail client or a filter rule would."""
    client = server.client()
    try:
        client.select_folder(source)
        client.copy(uids, target)
    finally:
        client.logout()


def read_folder(server: DovecotServer, folder: str) -> list[tuple[tuple[bytes, ...], bytes]]:
    """Return the flags and bytes of every message in a folder, in UID order, setting no flags."""
    client = server.client()
    try:
        client.select_folder(folder, readonly=True)
        fetched = client.fetch(client.search(["ALL"]), ["FLAGS", "BODY.PEEK[]"])
    finally:
        client.logout()
    return [(tuple(data[b"FLAGS"]), bytes(data[b"BODY[]"])) for _, data in sorted(fetched.items())]


def folder_names_on_the_wire(server: DovecotServer) -> list[bytes]:
    """Return the folder names as the server sends them in LIST, without IMAPClient's decoding."""
    client = server.client()
    try:
        client.folder_encode = False
        return [name for _, _, name in client.list_folders()]
    finally:
        client.logout()
