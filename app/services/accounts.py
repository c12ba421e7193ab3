"""Users: registration, password checks, public profiles."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from app.aio import offload
from app.extensions import db
from app.models import Store, User
from app.services.errors import Conflict, NotFound

_hasher = PasswordHasher()  # Argon2id with the library's RFC 9106 defaults
# Verifying against this when the user does not exist makes both failures cost the same.
_DUMMY_HASH = _hasher.hash("not-a-real-password")


def register_user(*, username: str, password: str) -> User:
    """Create a user; ``Conflict`` when the username is taken."""
    if db.session.scalar(select(User.id).where(User.username == username)) is not None:
        raise Conflict(f"The username {username!r} is already taken.")
    user = User(username=username, password_hash=offload(_hasher.hash, password))
    db.session.add(user)
    try:
        db.session.commit()
    except IntegrityError as exc:  # a concurrent registration won the race
        db.session.rollback()
        raise Conflict(f"The username {username!r} is already taken.") from exc
    return user


def authenticate(*, username: str, password: str) -> User | None:
    """The user with these credentials, or ``None``; same cost whether or not they exist."""
    user = db.session.scalar(select(User).where(User.username == username))
    try:
        offload(_hasher.verify, user.password_hash if user else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    if user is None:
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = offload(_hasher.hash, password)
        db.session.commit()
    return user


def get_user(user_id: int) -> User | None:
    return db.session.get(User, user_id)


def public_profile(*, username: str) -> dict[str, object]:
    """``{username, store_count}`` for a user, ``NotFound`` when there is none."""
    # A name no account can have (e.g. with a NUL, which PostgreSQL refuses) finds no-one.
    valid = "\x00" not in username and len(username) <= 40
    user = db.session.scalar(select(User).where(User.username == username)) if valid else None
    if user is None:
        raise NotFound(f"No user named {username!r}.")
    count = db.session.scalar(select(func.count(Store.id)).where(Store.owner_id == user.id))
    return {"username": user.username, "store_count": count or 0}
