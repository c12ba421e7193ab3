"""Request and response schemas. They validate input and generate the OpenAPI document."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, pre_load, validate

USERNAME_RE = re.compile(r"^[A-Za-z0-9_.-]{3,40}$")
MAX_PRICE = Decimal("9999999999.99")
SORTS = ("id", "-id", "name", "-name", "price", "-price")
MAX_LIMIT = 500
DEFAULT_LIMIT = 50


def utc_iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with a ``Z`` suffix (naive datetimes are UTC)."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class UTCDateTimeField(fields.Field):
    """ISO 8601 in UTC with a ``Z`` suffix."""

    def _serialize(self, value: datetime | None, attr: str | None, obj: Any, **kwargs: Any):
        return utc_iso(value)


class IntegerField(fields.Integer):
    """An integer given as a JSON integer or a string of digits (forms); never 1.5 or true."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if isinstance(value, bool):
            raise ValidationError("Not a valid integer.")
        if isinstance(value, float) and not value.is_integer():
            raise ValidationError("Not a valid integer.")
        if isinstance(value, str) and not re.fullmatch(r"\s*[+-]?\d+\s*", value):
            raise ValidationError("Not a valid integer.")
        return super()._deserialize(value, attr, data, **kwargs)


class PriceField(fields.Decimal):
    """A decimal number >= 0 with at most two places, given as a number or a string."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(as_string=False, allow_nan=False, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Decimal:
        if isinstance(value, bool):
            raise ValidationError("Not a valid number.")
        try:
            number = Decimal(str(value).strip())
        except (InvalidOperation, ValueError) as exc:
            raise ValidationError("Not a valid number.") from exc
        if not number.is_finite():
            raise ValidationError("Not a valid number.")
        if number < 0:
            raise ValidationError("Must be greater than or equal to 0.")
        if number > MAX_PRICE:
            raise ValidationError(f"Must be less than or equal to {MAX_PRICE}.")
        exponent = number.as_tuple().exponent
        if (
            isinstance(exponent, int)
            and exponent < -2
            and number != number.quantize(Decimal("0.01"))
        ):
            raise ValidationError("Must have at most 2 decimal places.")
        return number.quantize(Decimal("0.01"))


class SafeString(fields.String):
    """A string without NUL characters: PostgreSQL cannot store or compare them (a 500)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        if "\x00" in text:
            raise ValidationError("Must not contain NUL characters.")
        return text


class TrimmedString(SafeString):
    """A string with surrounding white space removed before its length is checked."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        return super()._deserialize(value, attr, data, **kwargs).strip()


class InputSchema(Schema):
    """Base for request bodies: unknown fields are errors, read-only fields are ignored.

    Ignoring read-only fields (id, owner, timestamps) lets a client send back what it
    read, while making mass assignment impossible: they never reach the service.
    """

    READ_ONLY = ("id", "owner", "store_id", "item_count", "created_at", "updated_at")

    class Meta:
        unknown = RAISE

    @pre_load
    def drop_read_only(self, data: Any, **kwargs: Any) -> Any:
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if k not in self.READ_ONLY}
        return data


# --- accounts -------------------------------------------------------------------------


class RegisterSchema(InputSchema):
    username = SafeString(
        required=True,
        validate=validate.Regexp(
            USERNAME_RE, error="Must be 3-40 characters of letters, digits, '_', '.' or '-'."
        ),
    )
    password = SafeString(required=True, load_only=True, validate=validate.Length(min=8, max=1024))


class LoginSchema(InputSchema):
    username = SafeString(required=True, validate=validate.Length(max=200))
    password = SafeString(required=True, load_only=True, validate=validate.Length(max=1024))


class UserSchema(Schema):
    id = fields.Integer(dump_only=True)
    username = fields.String()


class ProfileSchema(Schema):
    username = fields.String()
    store_count = fields.Integer()


class TokenSchema(Schema):
    access_token = fields.String()
    refresh_token = fields.String()
    token_type = fields.String(metadata={"example": "Bearer"})
    expires_in = fields.Integer(metadata={"description": "Seconds until the access token expires"})


# --- stores and items -----------------------------------------------------------------


class StoreSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    owner = fields.String(metadata={"description": "Username of the owner"})
    item_count = fields.Integer()
    created_at = UTCDateTimeField()
    updated_at = UTCDateTimeField()


class StoreInputSchema(InputSchema):
    name = TrimmedString(required=True, validate=validate.Length(min=1, max=80))


class StorePatchSchema(InputSchema):
    name = TrimmedString(validate=validate.Length(min=1, max=80))


class ItemSchema(Schema):
    id = fields.Integer()
    store_id = fields.Integer()
    name = fields.String()
    price = fields.Decimal(as_string=False, places=2)
    quantity = fields.Integer()
    sku = fields.String(allow_none=True)
    description = fields.String(allow_none=True)
    created_at = UTCDateTimeField()
    updated_at = UTCDateTimeField()


CENT = Decimal("0.01")


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def dump_store(store: Any) -> dict[str, Any]:
    """``StoreSchema().dump(store)`` without marshmallow's per-field machinery: lists are
    the hot path of a cache miss. tests/test_schemas.py keeps the two identical."""
    return {
        "id": store.id,
        "name": _text(store.name),
        "owner": _text(store.owner),
        "item_count": store.item_count,
        "created_at": utc_iso(store.created_at),
        "updated_at": utc_iso(store.updated_at),
    }


def dump_item(item: Any) -> dict[str, Any]:
    """``ItemSchema().dump(item)`` without marshmallow's per-field machinery (see
    ``dump_store``)."""
    price = item.price
    return {
        "id": item.id,
        "store_id": item.store_id,
        "name": _text(item.name),
        "price": None if price is None else Decimal(str(price)).quantize(CENT),
        "quantity": item.quantity,
        "sku": _text(item.sku),
        "description": _text(item.description),
        "created_at": utc_iso(item.created_at),
        "updated_at": utc_iso(item.updated_at),
    }


class ItemInputSchema(InputSchema):
    """A whole item (POST, PUT): absent optional fields take their defaults."""

    name = TrimmedString(required=True, validate=validate.Length(min=1, max=200))
    price = PriceField(required=True)
    quantity = IntegerField(load_default=0, validate=validate.Range(min=0, max=2**31 - 1))
    sku = SafeString(load_default=None, allow_none=True, validate=validate.Length(max=64))
    description = SafeString(load_default=None, allow_none=True, validate=validate.Length(max=2000))


class ItemPatchSchema(InputSchema):
    name = TrimmedString(validate=validate.Length(min=1, max=200))
    price = PriceField()
    quantity = IntegerField(validate=validate.Range(min=0, max=2**31 - 1))
    sku = SafeString(allow_none=True, validate=validate.Length(max=64))
    description = SafeString(allow_none=True, validate=validate.Length(max=2000))


# --- lists ----------------------------------------------------------------------------


class PageArgsSchema(Schema):
    limit = IntegerField(load_default=DEFAULT_LIMIT, validate=validate.Range(min=1, max=MAX_LIMIT))
    cursor = SafeString(metadata={"description": "Opaque cursor from a previous `next`"})


class StoreListArgsSchema(PageArgsSchema):
    q = SafeString(metadata={"description": "Case-insensitive substring of the name"})


class ItemListArgsSchema(PageArgsSchema):
    q = SafeString(metadata={"description": "Case-insensitive substring of the name"})
    min_price = PriceField()
    max_price = PriceField()
    sort = SafeString(load_default="id", validate=validate.OneOf(SORTS))


class StoreListSchema(Schema):
    stores = fields.List(fields.Nested(StoreSchema))
    next = fields.String(allow_none=True, metadata={"description": "URL of the next page"})


class ItemListSchema(Schema):
    items = fields.List(fields.Nested(ItemSchema))
    next = fields.String(allow_none=True, metadata={"description": "URL of the next page"})


# --- errors and operations ------------------------------------------------------------


class FieldErrorSchema(Schema):
    field = fields.String()
    message = fields.String()


class ProblemSchema(Schema):
    """RFC 9457 problem details."""

    type = fields.String()
    title = fields.String()
    status = fields.Integer()
    detail = fields.String()
    instance = fields.String()
    request_id = fields.String()
    errors = fields.List(fields.Nested(FieldErrorSchema))


class HealthSchema(Schema):
    status = fields.String()


class ReadinessSchema(Schema):
    status = fields.String()
    checks = fields.Dict(keys=fields.String(), values=fields.String())
