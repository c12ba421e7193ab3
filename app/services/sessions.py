"""Login sessions: token pairs that share a session id, and their revocation.

The database is the truth about revocations (our Redis keeps nothing on disk, and a
flush must never bring a logged-out token back to life); Redis holds the blocklist that
every process checks on each authenticated request, one round trip instead of a query.

The blocklist is one hash, ``rv:sessions``: ``{sid: expiry epoch}`` plus a ``_loaded``
field saying it holds every unexpired revocation. A logout commits its row, then adds
its field. A check that finds no ``_loaded`` (a flush, an eviction, a restart, or the
hash's own expiry) rebuilds the hash from the table. The hash expires every
``REBUILD_SECONDS``, which also bounds how long a logout whose process could not reach
Redis (while others could) goes unseen. With Redis down, checks read the table.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from flask_jwt_extended import create_access_token, create_refresh_token
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from app.extensions import db, redis_client
from app.models import RevokedSession, User

BLOCKLIST = "rv:sessions"
LOADED = "_loaded"  # not a sid: ours are hex
REBUILD_SECONDS = 60


def issue_tokens(user: User, *, access_seconds: int) -> dict[str, Any]:
    """A fresh access + refresh token pair for a new session."""
    sid = uuid.uuid4().hex
    identity = str(user.id)
    return {
        "access_token": create_access_token(identity=identity, additional_claims={"sid": sid}),
        "refresh_token": create_refresh_token(identity=identity, additional_claims={"sid": sid}),
        "token_type": "Bearer",
        "expires_in": access_seconds,
    }


def refresh_access(*, identity: str, sid: str, access_seconds: int) -> dict[str, Any]:
    """A new access token in the same session as the refresh token presented."""
    token = create_access_token(identity=identity, additional_claims={"sid": sid})
    return {"access_token": token, "token_type": "Bearer", "expires_in": access_seconds}


def revoke_session(*, sid: str, refresh_seconds: int) -> None:
    """Refuse every token of this session from now on (until the longest could expire)."""
    expires = datetime.now(UTC) + timedelta(seconds=refresh_seconds)
    db.session.add(RevokedSession(sid=sid, expires_at=expires))
    try:
        db.session.commit()
    except IntegrityError:  # already revoked: logging out twice is harmless
        db.session.rollback()
    db.session.execute(delete(RevokedSession).where(RevokedSession.expires_at < datetime.now(UTC)))
    db.session.commit()
    if redis_client.available():
        try:
            redis_client.client.hset(BLOCKLIST, sid, int(expires.timestamp()))
        except redis.RedisError as exc:  # the hash's next rebuild reads the row
            redis_client.failed(exc, "session blocklist")


def session_id(payload: dict[str, Any]) -> str | None:
    """The token's session id; ``None`` for a token we cannot have issued (then revoked)."""
    sid = payload.get("sid")
    return sid if isinstance(sid, str) and sid != LOADED else None


def listed_as_revoked(until: bytes | str | None) -> bool:
    """Whether the blocklist's field for a session (its expiry, or none) revokes it now."""
    return until is not None and int(until) > time.time()


def is_revoked(payload: dict[str, Any]) -> bool:
    sid = session_id(payload)
    if sid is None:
        return True  # tokens we issue always carry a session id
    if redis_client.available():
        try:
            loaded, until = redis_client.client.hmget(BLOCKLIST, [LOADED, sid])
            if loaded is None:
                return sid in _rebuild_blocklist()
            return listed_as_revoked(until)
        except redis.RedisError as exc:
            redis_client.failed(exc, "session blocklist")
    return db.session.get(RevokedSession, sid) is not None


def _rebuild_blocklist() -> dict[str, int]:
    """Load every unexpired revocation into the hash (merging with fields added meanwhile)."""
    rows = db.session.execute(
        select(RevokedSession.sid, RevokedSession.expires_at).where(
            RevokedSession.expires_at > datetime.now(UTC)
        )
    )
    mapping = {sid: int(expires.timestamp()) for sid, expires in rows}
    pipe = redis_client.client.pipeline(transaction=True)
    pipe.hset(BLOCKLIST, mapping={**mapping, LOADED: 1})
    pipe.expire(BLOCKLIST, REBUILD_SECONDS)
    pipe.execute()
    return mapping
