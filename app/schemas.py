"""Request and response schemas. They validate input and generate the OpenAPI document."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, pre_load, validate

from app import rules

USERNAME_RE = re.compile(r"^[A-Za-z0-9_.-]{3,40}$")
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


def _ruled(rule: Callable[[Any], Any], value: Any) -> Any:
    try:
        return rule(value)
    except rules.Broken as exc:
        raise ValidationError(exc.message) from None


class IntegerField(fields.Integer):
    """An integer given as a JSON integer or a string of digits (forms); never 1.5 or true.

    ``rule`` (``rules.integer`` unless given) decides, as it does for imports."""

    def __init__(self, rule: Callable[[Any], int] = rules.integer, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rule = rule

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        return _ruled(self.rule, value)


class PriceField(fields.Decimal):
    """A decimal number >= 0 with at most two places, given as a number or a string."""

    def __init__(self, **kwargs: Any) -> None:
        metadata = {"minimum": 0, "maximum": float(rules.PRICE_MAX)}
        super().__init__(as_string=False, allow_nan=False, metadata=metadata, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Decimal:
        return _ruled(rules.price, value)


class SafeString(fields.String):
    """A string the database can store (no NUL: PostgreSQL cannot store or compare it).

    ``rule`` (``rules.text`` unless given) checks it further, as it does for imports;
    ``metadata`` only describes that rule in the OpenAPI document."""

    def __init__(self, rule: Callable[[Any], str] = rules.text, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rule = rule

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        return _ruled(self.rule, super()._deserialize(value, attr, data, **kwargs))


def _lengths(maximum: int, minimum: int | None = None) -> dict[str, int]:
    """The OpenAPI description of a length rule (the rule itself is in ``app.rules``)."""
    if minimum is None:
        return {"maxLength": maximum}
    return {"minLength": minimum, "maxLength": maximum}


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


_STORE_NAME = _lengths(rules.STORE_NAME_MAX, rules.NAME_MIN)
_ITEM_NAME = _lengths(rules.NAME_MAX, rules.NAME_MIN)
_SKU = _lengths(rules.SKU_MAX)
_DESCRIPTION = _lengths(rules.DESCRIPTION_MAX)
_QUANTITY = {"minimum": 0, "maximum": rules.QUANTITY_MAX}


class StoreInputSchema(InputSchema):
    name = SafeString(rules.store_name, required=True, metadata=_STORE_NAME)


class StorePatchSchema(InputSchema):
    name = SafeString(rules.store_name, metadata=_STORE_NAME)


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


CENT = rules.CENT


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

    name = SafeString(rules.item_name, required=True, metadata=_ITEM_NAME)
    price = PriceField(required=True)
    quantity = IntegerField(rules.quantity, load_default=0, metadata=_QUANTITY)
    sku = SafeString(rules.sku, load_default=None, allow_none=True, metadata=_SKU)
    description = SafeString(
        rules.description, load_default=None, allow_none=True, metadata=_DESCRIPTION
    )


class ItemPatchSchema(InputSchema):
    name = SafeString(rules.item_name, metadata=_ITEM_NAME)
    price = PriceField()
    quantity = IntegerField(rules.quantity, metadata=_QUANTITY)
    sku = SafeString(rules.sku, allow_none=True, metadata=_SKU)
    description = SafeString(rules.description, allow_none=True, metadata=_DESCRIPTION)


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
