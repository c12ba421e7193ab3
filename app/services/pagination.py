"""Keyset pagination with opaque cursors: stable under inserts, each row seen exactly once."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy import Integer, Numeric, Select, String, tuple_
from sqlalchemy.orm import InstrumentedAttribute

from app import rules
from app.extensions import db
from app.services.errors import Invalid


@dataclass(frozen=True)
class SortKey:
    """Columns to order by (the last one unique), all ascending or all descending."""

    columns: tuple[InstrumentedAttribute, ...]
    descending: bool = False


@dataclass
class Page:
    rows: list[Any]
    next_cursor: str | None


def encode_cursor(values: Sequence[Any]) -> str:
    plain = [str(v) if isinstance(v, Decimal) else v for v in values]
    return base64.urlsafe_b64encode(orjson.dumps(plain)).decode().rstrip("=")


def decode_cursor(cursor: str, size: int) -> list[Any]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = orjson.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, orjson.JSONDecodeError, UnicodeEncodeError) as exc:
        raise _bad_cursor() from exc
    if not isinstance(values, list) or len(values) != size:
        raise _bad_cursor()
    return values


def _bad_cursor() -> Invalid:
    return Invalid(
        "The cursor is not valid for this list.",
        errors=[{"field": "cursor", "message": "Not a cursor returned by this list."}],
    )


def _cursor_value(column: InstrumentedAttribute, value: Any) -> Any:
    """A cursor value checked against its column's type.

    A cursor is client input: a value of the wrong type, or a string the database cannot
    hold (a NUL), would compare oddly on SQLite (silently empty pages) and raise on
    PostgreSQL (a 500), so it is a 422 instead.
    """
    kind = column.type
    if isinstance(kind, Numeric) and isinstance(value, str):
        try:
            number = Decimal(value)
        except ArithmeticError as exc:
            raise _bad_cursor() from exc
        # bounded, so PostgreSQL never sees a number its NUMERIC cannot hold
        if number.is_finite() and number.adjusted() < 20:
            return number
    is_int = isinstance(kind, Integer) and type(value) is int and -(2**63) <= value < 2**63
    is_text = isinstance(kind, String) and isinstance(value, str) and rules.storable(value)
    if is_int or is_text:
        return value
    raise _bad_cursor()


def paginate(query: Select, key: SortKey, *, limit: int, cursor: str | None) -> Page:
    """Run ``query`` ordered by ``key``, returning up to ``limit`` rows after ``cursor``."""
    cols = key.columns
    if cursor:
        values = [
            _cursor_value(c, v) for c, v in zip(cols, decode_cursor(cursor, len(cols)), strict=True)
        ]
        row_cols, row_vals = tuple_(*cols), tuple_(*values)
        query = query.where(row_cols < row_vals if key.descending else row_cols > row_vals)
    order = [c.desc() if key.descending else c.asc() for c in cols]
    rows = list(db.session.scalars(query.order_by(*order).limit(limit + 1)).unique())
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        next_cursor = encode_cursor([getattr(last, c.key) for c in cols])
    return Page(rows=rows, next_cursor=next_cursor)
