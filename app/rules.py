"""The item rules, in one place: the request schemas (``app/schemas.py``), the import's
row checks (``app/services/rows.py``) and the catalog all use these.

A rule takes a value as a client sent it (a JSON value, or a string from a form or a CSV
cell) and returns the value to store, or raises ``Broken`` with the message the client
sees. Whether a value may be absent, and its default, is the caller's business (a
schema's ``required``/``load_default``; an import's empty cell).
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

ITEM_FIELDS = ("name", "price", "quantity", "sku", "description")
NAME_MIN, NAME_MAX = 1, 200
STORE_NAME_MAX = 80
SKU_MAX = 64
DESCRIPTION_MAX = 2000
PRICE_MAX = Decimal("9999999999.99")  # numeric(12, 2)
CENT = Decimal("0.01")
QUANTITY_MAX = 2**31 - 1  # a 32-bit integer column

# What no text column can hold: NUL (PostgreSQL's text types refuse it; SQLite would
# store it and hand it to every reader) and lone surrogates (not encodable as UTF-8, so
# no driver can send them; a JSON ``"\ud800"`` escape decodes to one).
_SURROGATE = re.compile("[\ud800-\udfff]")
# Numbers given as text are ASCII, as JSON and CSV write them: Python's ``Decimal()`` and
# ``int()`` also read other scripts' digits (Arabic-Indic "12" is 12), "1_000" and Unicode
# spaces.
_ASCII_SPACE = "[ \t\n\r]*"
_INTEGER = re.compile(f"{_ASCII_SPACE}[+-]?[0-9]+{_ASCII_SPACE}")
_DECIMAL = re.compile(
    f"{_ASCII_SPACE}[+-]?(?:[0-9]+(?:\\.[0-9]*)?|\\.[0-9]+)(?:[eE][+-]?[0-9]+)?{_ASCII_SPACE}"
)
REPLACEMENT = "\ufffd"


class Broken(ValueError):
    """A value that breaks a rule; ``message`` says which, for the client."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def storable(text: str) -> bool:
    """Whether every character of ``text`` can be stored (the hot path: ASCII text is
    checked for NUL alone, as ``isascii`` is a flag lookup)."""
    return "\x00" not in text and (text.isascii() or _SURROGATE.search(text) is None)


def printable(text: str) -> str:
    """``text`` with the characters no column can hold replaced by U+FFFD: for echoing a
    refused value back (a row error's ``value``), never for data."""
    if storable(text):
        return text
    return _SURROGATE.sub(REPLACEMENT, text.replace("\x00", REPLACEMENT))


def text(raw: Any) -> str:
    """A string the database can store."""
    if not isinstance(raw, str):
        raise Broken("Not a valid string.")
    if not storable(raw):
        if "\x00" in raw:
            raise Broken("Must not contain NUL characters.")
        raise Broken("Must not contain unpaired surrogate characters.")
    return raw


def _length(value: str, maximum: int, minimum: int = 0) -> str:
    # marshmallow's ``validate.Length`` messages, which the API has always answered.
    if minimum and not minimum <= len(value) <= maximum:
        raise Broken(f"Length must be between {minimum} and {maximum}.")
    if len(value) > maximum:
        raise Broken(f"Longer than maximum length {maximum}.")
    return value


def trimmed(raw: Any, maximum: int, minimum: int = NAME_MIN) -> str:
    """A name: white space around it removed, then its length checked."""
    return _length(text(raw).strip(), maximum, minimum)


def item_name(raw: Any) -> str:
    return trimmed(raw, NAME_MAX)


def store_name(raw: Any) -> str:
    return trimmed(raw, STORE_NAME_MAX)


def sku(raw: Any) -> str:
    return _length(text(raw), SKU_MAX)


def description(raw: Any) -> str:
    return _length(text(raw), DESCRIPTION_MAX)


def price(raw: Any) -> Decimal:
    """A decimal number >= 0 with at most two places, given as a number or a string of
    ASCII digits (an exponent allowed); returned with exactly two places."""
    if isinstance(raw, bool) or not isinstance(raw, str | int | float | Decimal):
        raise Broken("Not a valid number.")
    if isinstance(raw, str) and not _DECIMAL.fullmatch(raw):
        raise Broken("Not a valid number.")
    try:
        number = Decimal(raw.strip() if isinstance(raw, str) else str(raw))
    except (InvalidOperation, ValueError):
        raise Broken("Not a valid number.") from None
    if not number.is_finite():
        raise Broken("Not a valid number.")
    if number < 0:
        raise Broken("Must be greater than or equal to 0.")
    if number > PRICE_MAX:
        raise Broken(f"Must be less than or equal to {PRICE_MAX}.")
    exponent = number.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -2 and number != number.quantize(CENT):
        raise Broken("Must have at most 2 decimal places.")
    return number.quantize(CENT)


def integer(raw: Any) -> int:
    """An integer given as a JSON integer, a float without a fraction, or a string of
    ASCII digits with an optional sign (forms, CSV); never ``1.5`` nor ``true``."""
    if isinstance(raw, bool):
        raise Broken("Not a valid integer.")
    if isinstance(raw, int):
        return raw
    if isinstance(raw, float) and raw.is_integer():
        return int(raw)
    if isinstance(raw, str) and _INTEGER.fullmatch(raw):
        try:
            return int(raw)
        except ValueError:  # more digits than Python converts (int_max_str_digits)
            pass
    raise Broken("Not a valid integer.")


def quantity(raw: Any) -> int:
    value = integer(raw)
    if not 0 <= value <= QUANTITY_MAX:
        raise Broken(
            f"Must be greater than or equal to 0 and less than or equal to {QUANTITY_MAX}."
        )
    return value


# Each item field's rule, by name (the import checks a row field by field with these).
ITEM_RULES = {
    "name": item_name,
    "price": price,
    "quantity": quantity,
    "sku": sku,
    "description": description,
}
