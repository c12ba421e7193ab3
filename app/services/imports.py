"""Run an import job: stream the stored file through the parser and validation, apply it
in chunks, finish.

Each chunk's item writes, its row errors and the job's checkpoint (rows done, counts)
commit in one transaction, written under the worker's lease. A run that dies anywhere
resumes after the last committed chunk, so the end state and counts equal those of an
uninterrupted run: nothing is applied or counted twice.

Duplicate names inside one file: the first row naming an item decides; every later
row with that name is a row error, whether or not the first row was valid. Which names
have been seen is rebuilt on resume by re-reading the rows already done (only their
names), so it is exact across crashes without being stored anywhere.
"""

from __future__ import annotations

import contextlib
import gc
import io
import logging
import queue
import threading
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from sqlalchemy import CursorResult, insert, select, update
from sqlalchemy.exc import OperationalError

from app import rules
from app.config import Settings
from app.extensions import db
from app.models import Job, JobError, utcnow
from app.services import apply, catalog, jobs, rows, uploads
from app.services.names import NameHashes
from app.services.rows import RowError

log = logging.getLogger(__name__)

T = TypeVar("T")
EXISTS = "An item with this name already exists in the store (mode=create)."


class LeaseLost(Exception):
    """Another worker holds the job now; this one must stop without writing."""


def run(job_id: str, *, should_stop: Callable[[], bool] = lambda: False) -> str:
    """Claim and run (or resume) a job. Returns what happened: ``succeeded``, ``failed``,
    ``cancelled``, ``released`` (warm shutdown), ``retry`` (the attempt failed; queued
    again, to be re-sent), ``lost`` or ``skipped`` (not ours)."""
    lease = jobs.claim(job_id)
    if lease is None:
        return "skipped"
    conf = jobs.settings()
    beat = max(0.5, conf.job_stale_after / 4)
    with jobs.Heartbeat(db.engine, job_id, lease, beat), _collector_per_chunk():
        try:
            return _Run(job_id, lease, conf).execute(should_stop)
        except LeaseLost:
            db.session.rollback()
            log.warning("job %s: lease lost; it was ended or another worker has it", job_id)
            return "lost"
        except OperationalError:
            # The database (gone, locked, a deadlock), not the job: the job keeps its
            # attempts and the reaper gives it to a worker again once it is stale.
            db.session.rollback()
            raise
        except Exception as exc:
            db.session.rollback()
            outcome = jobs.record_failure(job_id, jobs.failure_reason(exc), lease=lease)
            # "lost": the job was ended meanwhile (its store deleted, say), which is
            # what made this attempt fail; nothing to report.
            lost = outcome == "lost"
            log.log(
                logging.INFO if lost else logging.ERROR,
                "job %s: the attempt failed; %s",
                job_id,
                outcome,
                exc_info=not lost,
            )
            return outcome
        except BaseException:
            db.session.rollback()
            raise


class _Run:
    def __init__(self, job_id: str, lease: str, conf: Settings) -> None:
        job = db.session.get(Job, job_id)
        assert job is not None
        if job.store_id is None:  # its store was deleted, which ended the job
            db.session.commit()
            raise LeaseLost
        self.job_id, self.lease = job_id, lease
        self.store_id: int = job.store_id
        self.mode, self.dry_run = job.mode, job.dry_run
        self.file_format = job.file_format
        self.done = job.processed  # rows committed: the checkpoint
        self.resume_after = job.processed  # where this run starts (fixed; read by the parser)
        self.seen = NameHashes()  # hashes of the names met so far (built by the parser)
        self.engine = db.engine
        self.created, self.updated, self.failed = job.created, job.updated, job.failed
        self.chunk_rows = conf.import_chunk_rows
        self.batch_rows = apply.batch_rows(self.engine.dialect.name, conf.import_batch_rows)
        self.fresh = True  # no batch has met an existing name yet: try the bulk path
        self.pending = _Pending()  # the open chunk's counts, not committed yet
        db.session.commit()

    def execute(self, should_stop: Callable[[], bool]) -> str:
        batches = _read_ahead(self._batches())
        try:
            tail: tuple[int, int] | None = None  # the last batch written: row, bytes read
            for last, checked, bytes_done in batches:
                self._write(checked)
                del checked  # before collecting: the batch is garbage now
                tail = (last, bytes_done)
                if last - self.done >= self.chunk_rows:
                    self._checkpoint(*tail)
                    stop = self._boundary(should_stop)
                    if stop:
                        return stop
            if tail is not None and tail[0] > self.done:
                self._checkpoint(*tail)
        except rows.FileError as exc:
            db.session.rollback()
            return self._finish("failed", error=jobs.file_problem(exc.detail))
        finally:
            batches.close()
        return self._finish("succeeded", seen=self.seen)

    def _batches(self) -> Iterator[tuple[int, rows.Checked, int]]:
        """The file's rows after the checkpoint, checked, in batches: ``(last row, checked
        rows, bytes read)``. Raises ``FileError``."""
        reader = uploads.UploadReader(self.engine, self.job_id)
        text = io.TextIOWrapper(reader, encoding="utf-8-sig", newline="")
        size = min(self.chunk_rows, self.batch_rows)
        for batch in rows.batches(text, self.file_format, size, skip=self.resume_after):
            last = batch.first + len(batch.entries) - 1
            if last <= self.resume_after:  # committed already: only remember its names
                rows.remember_names(batch, self.seen)
                continue
            checked = rows.check(batch, self.seen)
            del batch  # its cells: not kept while the batch waits to be written
            yield last, checked, reader.bytes_read

    def _write(self, checked: rows.Checked) -> None:
        """Apply one batch in the chunk's open transaction (committed by the checkpoint)."""
        conn = db.session.connection()
        items, errors, failed_rows = checked.items, checked.errors, checked.failed_rows
        existing = apply.apply_chunk(
            conn,
            self.store_id,
            items,
            utcnow(),
            create_only=self.mode == "create",
            dry_run=self.dry_run,
            fresh=self.fresh,
        )
        self.fresh = not existing
        written = len(items)
        if self.mode == "create":
            for r, item in zip(checked.rows, items, strict=True):
                if item[0] in existing:
                    errors.append(RowError(r, "name", EXISTS, item[0]))
                    failed_rows += 1
            written, updated = written - len(existing), 0
        else:
            updated = len(existing)
        if errors:
            conn.execute(
                insert(JobError),
                [
                    {
                        "job_id": self.job_id,
                        "row": e.row,
                        # The refused value is shown, never stored as is: a NUL in
                        # it would fail the chunk on PostgreSQL like the row did.
                        "field": rules.printable(e.field[:64]),
                        "message": e.message[:300],
                        "value": None if e.value is None else rules.printable(e.value),
                    }
                    for e in errors
                ],
            )
        self.pending.add(written - updated, updated, failed_rows)

    def _checkpoint(self, row: int, bytes_done: int) -> None:
        """Commit the chunk: its batches' writes and errors, and the job's progress."""
        pending, now = self.pending, utcnow()
        # An UPDATE's result is a CursorResult (its rowcount: did the lease still hold).
        checkpoint = cast(
            CursorResult,
            db.session.execute(
                update(Job)
                .where(Job.id == self.job_id, Job.lease == self.lease, Job.status == "running")
                .values(
                    processed=row,
                    created=self.created + pending.created,
                    updated=self.updated + pending.updated,
                    failed=self.failed + pending.failed,
                    bytes_done=bytes_done,
                    heartbeat_at=now,
                    last_failure=None,  # progress: an earlier failure no longer repeats itself
                )
            ),
        )
        if checkpoint.rowcount != 1:
            raise LeaseLost
        db.session.commit()
        jobs.announce(self.job_id)
        self.done = row
        self.created += pending.created
        self.updated += pending.updated
        self.failed += pending.failed
        self.pending = _Pending()
        if pending.created + pending.updated and not self.dry_run:
            _announce(self.store_id)
        _collect()

    def _boundary(self, should_stop: Callable[[], bool]) -> str | None:
        """Between chunks: a warm shutdown gives the job back; a cancel ends it."""
        cancel = db.session.scalar(select(Job.cancel_requested).where(Job.id == self.job_id))
        db.session.commit()
        if cancel:
            return self._finish("cancelled")
        if should_stop():
            return "released" if jobs.release(self.job_id, self.lease) else "cancelled"
        return None

    def _finish(self, status: str, *, error: dict | None = None, seen: NameHashes | None = None):
        conn = db.session.connection()
        now = utcnow()
        deleted = 0
        if status == "succeeded" and self.mode == "replace" and seen is not None:
            deleted = self._delete_absent(conn, seen)
        values = {**jobs.ended_values(status, now, error), "deleted": deleted}
        finished = conn.execute(
            update(Job)
            .where(Job.id == self.job_id, Job.lease == self.lease, Job.status == "running")
            .values(**values)
        )
        if finished.rowcount != 1:
            raise LeaseLost
        uploads.delete_upload(db.session, self.job_id)
        db.session.commit()
        jobs.announce(self.job_id)
        if not self.dry_run:
            # Also covers chunks committed by an earlier, interrupted run.
            _announce(self.store_id)
        log.info("job %s %s", self.job_id, status)
        return status

    def _delete_absent(self, conn, seen: NameHashes) -> int:
        """``replace``: the store's items that no row of the file names (counted only on a
        dry run)."""
        deleted = 0
        for batch in apply.store_items(conn, self.store_id):
            absent = [item_id for item_id, name in batch if hash(name) not in seen]
            deleted += len(absent)
            if not self.dry_run:
                apply.delete_ids(conn, absent)
        return deleted


@dataclass(slots=True)
class _Pending:
    """What the batches of the open chunk did: counted once the chunk commits."""

    created: int = 0
    updated: int = 0
    failed: int = 0

    def add(self, created: int, updated: int, failed: int) -> None:
        self.created += created
        self.updated += updated
        self.failed += failed


def _read_ahead(source: Iterator[T], depth: int = 2) -> Generator[T, None, None]:
    """``source``'s items, produced ``depth`` ahead in a thread of their own.

    Parsing and checking the next chunk (Python) then overlaps the database's work on
    this one (the drivers release the GIL while they wait). Exceptions reach the
    consumer in order, after the chunks before them; closing the generator stops the
    producer.
    """
    channel: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry: tuple[bool, Any]) -> bool:
        while not stop.is_set():
            try:
                channel.put(entry, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in source:
                if not put((True, item)):
                    return
            put((False, None))
        except BaseException as exc:  # handed to the consumer, raised there
            put((False, exc))

    thread = threading.Thread(target=produce, name="import-parser", daemon=True)
    thread.start()
    try:
        while True:
            more, value = channel.get()
            if not more:
                if value is not None:
                    raise value
                return
            yield value
    finally:
        stop.set()
        thread.join(timeout=10)


@contextlib.contextmanager
def _collector_per_chunk() -> Iterator[None]:
    """Cyclic garbage collection once per chunk instead of whenever allocations pile up.

    A chunk allocates a few hundred thousand rows, cells and tuples at once and none of
    them is part of a cycle: refcounting frees them. The automatic collector would still
    walk them again and again (each chunk alive at once outgrows its threshold for a
    full collection), a quarter of an import's time. Cycles that do appear (a failed
    announcement's traceback, say) are collected at the next chunk boundary.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _collect() -> None:
    """At a chunk boundary: what the chunk left in cycles (only the young generation: the
    rest has been looked at before)."""
    if not gc.isenabled():
        gc.collect(0)


def _announce(store_id: int) -> None:
    """Announce the committed chunk (``catalog.store_changed``); a listener's failure
    must not fail the import."""
    try:
        catalog.store_changed(store_id)
    except Exception as exc:
        log.warning("store %s changed but the announcement failed: %s", store_id, exc)
