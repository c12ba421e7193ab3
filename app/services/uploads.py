"""Uploaded files: spooled while they arrive, stored in the database in ~1 MiB slices.

The database is the shared storage between the web and the worker processes (they run
on different machines with ephemeral disks), so a file never travels through a local
path nor inside a task message.
"""

from __future__ import annotations

import hashlib
import io
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from typing import IO, BinaryIO

from sqlalchemy import delete, insert, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from app.models import UploadChunk
from app.services.errors import ServiceError

SLICE_BYTES = 1024 * 1024


class TooLarge(ServiceError):
    status = 413
    title = "Content Too Large"


@dataclass
class Spooled:
    """A received file: its bytes in a temporary spool, its size and SHA-256."""

    file: IO[bytes]
    size: int
    sha256: str

    def close(self) -> None:
        self.file.close()


def spool(source: BinaryIO | Iterable[bytes], *, limit: int, salt: bytes = b"") -> Spooled:
    """Read ``source`` in slices into a spool (memory up to 1 MiB, then a temp file).

    Spooling first keeps the database transaction that stores the file short even for a
    slow client (SQLite has one writer at a time). Raises ``TooLarge`` past ``limit``.
    ``salt`` is hashed before the body (the request's options take part in idempotency).
    """
    # Returned open: the caller closes it once the file is stored.
    out = tempfile.SpooledTemporaryFile(max_size=SLICE_BYTES)  # noqa: SIM115
    digest = hashlib.sha256(salt)
    size = 0
    for piece in _slices(source):
        size += len(piece)
        if size > limit:
            out.close()
            raise TooLarge(f"The file is larger than the import limit of {limit} bytes.")
        digest.update(piece)
        out.write(piece)
    out.seek(0)
    return Spooled(out, size, digest.hexdigest())


def _slices(source: BinaryIO | Iterable[bytes]) -> Iterable[bytes]:
    read = getattr(source, "read", None)
    if read is None:
        yield from source  # type: ignore[misc]
        return
    while piece := read(SLICE_BYTES):
        yield piece


def store(session: Session, job_id: str, spooled: Spooled) -> int:
    """Insert the spooled file as ``upload_chunks`` rows in the session's transaction."""
    spooled.file.seek(0)
    seq = 0
    while piece := spooled.file.read(SLICE_BYTES):
        session.execute(insert(UploadChunk).values(job_id=job_id, seq=seq, data=piece))
        seq += 1
    return seq


def delete_upload(session: Session, job_id: str) -> None:
    session.execute(delete(UploadChunk).where(UploadChunk.job_id == job_id))


class UploadReader(io.RawIOBase):
    """A stored upload as a raw byte stream, one slice in memory at a time.

    Each slice is read on a short connection of its own, never inside the caller's
    write transaction (so reads never hold SQLite's write lock or a stale snapshot).
    """

    def __init__(self, engine: Engine, job_id: str) -> None:
        self._engine, self._job_id = engine, job_id
        self._seq, self._buf, self._pos = 0, b"", 0
        self.bytes_read = 0
        self._eof = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        if self._pos >= len(self._buf) and not self._next_slice():
            return 0
        n = min(len(buffer), len(self._buf) - self._pos)
        buffer[:n] = self._buf[self._pos : self._pos + n]
        self._pos += n
        self.bytes_read += n
        return n

    def _next_slice(self) -> bool:
        if self._eof:
            return False
        query = select(UploadChunk.data).where(
            UploadChunk.job_id == self._job_id, UploadChunk.seq == self._seq
        )
        with self._engine.connect() as conn:
            data = conn.execute(query).scalar()
        if data is None:
            self._eof = True
            return False
        self._buf, self._pos, self._seq = bytes(data), 0, self._seq + 1
        return True
