"""Attachment storage: file bytes on disk, named by their SHA-256, metadata in the database.

Keeping attachment bytes out of the database keeps rows small, backups fast and a 30 MB
mail from travelling through the ORM twice. A file is written under a temporary name and
renamed into place, so a reader never sees half a file, and identical files (the same logo
in every signature) are stored once.

A file is written before the transaction that refers to it commits. When that transaction
rolls back, the file stays without a row; ``AttachmentStore.unreferenced`` lists such files.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

_STORE_KEY = "switchboard.attachment_store"
_DIGEST = re.compile(r"^[0-9a-f]{64}$")


class AttachmentStore:
    """A folder of attachment files, two levels deep by the first hex digits of their digest."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)

    def put(self, data: bytes) -> str:
        """Store ``data`` and return its key (the SHA-256 in hex). Storing it again is a no-op."""
        key = hashlib.sha256(data).hexdigest()
        path = self.path(key)
        if path.exists():
            # A fresh modification time marks the file as in use again, so a prune that
            # skips recent files cannot remove it before the new reference commits.
            try:
                os.utime(path)
                return key
            except FileNotFoundError:
                pass  # pruned just now: write it again
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".incoming-")
        try:
            with os.fdopen(descriptor, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return key

    def path(self, key: str) -> Path:
        """Return the file of ``key``. Raises ``ValueError`` for anything but a hex SHA-256."""
        if not _DIGEST.match(key):
            raise ValueError(f"invalid attachment key {key!r}: expected 64 lowercase hex digits")
        return self.root / key[:2] / key[2:4] / key

    def read(self, key: str) -> bytes:
        return self.path(key).read_bytes()

    def keys(self) -> Iterator[str]:
        """Yield the key of every stored file."""
        for path in self.root.glob("??/??/*"):
            if _DIGEST.match(path.name):
                yield path.name

    def unreferenced(self, referenced: set[str]) -> list[str]:
        """Return the keys of stored files that no key in ``referenced`` names."""
        return sorted(key for key in self.keys() if key not in referenced)


def use_attachment_store(session_factory: sessionmaker[Session], store: AttachmentStore) -> None:
    """Make ``store`` the attachment store of every session this factory creates."""
    session_factory.kw.setdefault("info", {})[_STORE_KEY] = store


def attachment_store(session: Session) -> AttachmentStore:
    """Return the session's attachment store. Raises ``RuntimeError`` when none was set."""
    store = session.info.get(_STORE_KEY)
    if store is None:
        raise RuntimeError("no attachment store: call use_attachment_store on the session factory")
    return store
