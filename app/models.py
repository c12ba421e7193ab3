"""The database schema: users, stores, items, revoked sessions and import jobs."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    Numeric,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    func,
    select,
)
from sqlalchemy.orm import Mapped, column_property, mapped_column, relationship

from app.extensions import db


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """Stores naive UTC (SQLite keeps no zone) and always hands back aware UTC datetimes."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime, default=utcnow, onupdate=utcnow, nullable=False
    )


class User(TimestampMixin, db.Model):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(40), unique=True, nullable=False)
    password_hash: Mapped[str] = mapped_column(String(255), nullable=False)


class RevokedSession(db.Model):
    """A logged-out session: every token carrying its ``sid`` is refused until it expires."""

    __tablename__ = "revoked_sessions"

    sid: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, index=True)


class Item(TimestampMixin, db.Model):
    __tablename__ = "items"
    __table_args__ = (
        UniqueConstraint("store_id", "name", name="uq_items_store_id_name"),
        CheckConstraint("price >= 0", name="price_nonneg"),
        CheckConstraint("quantity >= 0", name="quantity_nonneg"),
        Index("ix_items_store_price", "store_id", "price", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    store_id: Mapped[int] = mapped_column(
        ForeignKey("stores.id", ondelete="CASCADE"), nullable=False
    )
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    price: Mapped[Decimal] = mapped_column(Numeric(12, 2), nullable=False)
    quantity: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    sku: Mapped[str | None] = mapped_column(String(64))
    description: Mapped[str | None] = mapped_column(Text)


class Store(TimestampMixin, db.Model):
    __tablename__ = "stores"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(80), unique=True, nullable=False)
    owner_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    owner_user: Mapped[User] = relationship(lazy="joined")
    item_count: Mapped[int] = column_property(
        select(func.count(Item.id))
        .where(Item.store_id == id)
        .correlate_except(Item)
        .scalar_subquery()
    )

    @property
    def owner(self) -> str:
        return self.owner_user.username


class Job(db.Model):
    """A background job (a bulk item import): the one truth about its state and progress."""

    __tablename__ = "jobs"
    __table_args__ = (
        # One job per (user, Idempotency-Key); NULL keys never collide.
        UniqueConstraint("user_id", "idempotency_key", name="uq_jobs_user_id_idempotency_key"),
        Index("ix_jobs_user_id_id", "user_id", "id"),
        Index("ix_jobs_status_heartbeat_at", "status", "heartbeat_at"),
        Index("ix_jobs_finished_at", "finished_at"),
    )

    # Time-ordered UUID (version 7): ordering by id is ordering by creation.
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), nullable=False, default="item_import")
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    # A job outlives its store (its record and row errors stay readable): NULL once the
    # store is deleted.
    store_id: Mapped[int | None] = mapped_column(
        ForeignKey("stores.id", ondelete="SET NULL"), nullable=True, index=True
    )
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="queued")
    mode: Mapped[str] = mapped_column(String(16), nullable=False, default="upsert")
    dry_run: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    file_format: Mapped[str] = mapped_column(String(16), nullable=False)
    upload_bytes: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    body_sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    total: Mapped[int | None] = mapped_column(Integer)
    processed: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    created: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    updated: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    deleted: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    failed: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    bytes_done: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    error: Mapped[dict | None] = mapped_column(JSON)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    # Why the last attempt failed (its exception, or how its worker process died), until
    # a chunk commits: the same failure again fails the job (a poison job).
    last_failure: Mapped[str | None] = mapped_column(Text)
    # Who holds the job: a claim writes a fresh lease; checkpoints only land under it.
    lease: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class JobError(db.Model):
    """A row of an import that failed validation (the row itself, not the job)."""

    __tablename__ = "job_errors"
    __table_args__ = (Index("ix_job_errors_job_id_row", "job_id", "row", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False)
    row: Mapped[int] = mapped_column(Integer, nullable=False)
    field: Mapped[str] = mapped_column(String(64), nullable=False)
    message: Mapped[str] = mapped_column(String(300), nullable=False)
    value: Mapped[str | None] = mapped_column(Text)


class UploadChunk(db.Model):
    """An uploaded file, stored durably in the database in slices of about 1 MiB."""

    __tablename__ = "upload_chunks"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    data: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
