"""Keyset pagination with opaque cursors: stable under inserts, each row seen exactly once."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy import Numeric, Select, tuple_
from sqlalchemy.orm import InstrumentedAttribute

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


def paginate(query: Select, key: SortKey, *, limit: int, cursor: str | None) -> Page:
    """Run ``query`` ordered by ``key``, returning up to ``limit`` rows after ``cursor``."""
    cols = key.columns
    if cursor:
        values = decode_cursor(cursor, len(cols))
        try:
            values = [
                Decimal(v) if isinstance(c.type, Numeric) else v
                for c, v in zip(cols, values, strict=True)
            ]
        except (ArithmeticError, ValueError, TypeError) as exc:
            raise _bad_cursor() from exc
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
