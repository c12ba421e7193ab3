"""Login sessions: token pairs that share a session id, and their revocation.

Revocations live in the database, not only in Redis: our Redis keeps nothing on disk,
and a flush must never bring a logged-out token back to life. Every process reads the
same table, so a logout is honoured everywhere at once.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from flask_jwt_extended import create_access_token, create_refresh_token
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError

from app.extensions import db
from app.models import RevokedSession, User


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


def is_revoked(payload: dict[str, Any]) -> bool:
    sid = payload.get("sid")
    if not isinstance(sid, str):
        return True  # tokens we issue always carry a session id
    return db.session.get(RevokedSession, sid) is not None
