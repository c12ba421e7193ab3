"""app/rules.py: the request schemas and the import's row checks (its fast path and its
full check) accept and refuse exactly the same values, field by field."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from marshmallow import ValidationError

from app import rules
from app.schemas import ItemInputSchema, StoreInputSchema
from app.services import rows

VALID = {"name": "Tea", "price": "1.50"}
OPTIONAL = ("quantity", "sku", "description")
REFUSED = ["\x00", "\ud800", "\udfff", "\udc00x"]

pieces = st.text(max_size=6)
with_specials = st.builds(
    lambda a, c, b: a + c + b,
    pieces,
    st.sampled_from([*REFUSED, " ", "\t", "\n", "\u00a0", "\u0661", "+", "-", ".", "e"]),
    pieces,
)
numeric_text = st.from_regex(
    r"\s?[+-]{0,2}[0-9\u0661]{0,12}(\.[0-9]{0,4})?([eE][+-]?[0-9]{1,2})?\s?", fullmatch=True
)


def around(limit: int) -> st.SearchStrategy[str]:
    """Strings about ``limit`` characters long, some padded with white space."""
    return st.builds(
        lambda n, pad, c: pad + c * n + pad,
        st.integers(limit - 3, limit + 3),
        st.sampled_from(["", " ", "  "]),
        st.sampled_from(["x", "é", "\x00"]),
    )


values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.sampled_from([2**31 - 1, 2**31, 10**9 - 1, 10**9, -1, 0]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.decimals(allow_nan=False, places=3, min_value=-5, max_value=10**11).map(str),
    numeric_text,
    with_specials,
    pieces,
    st.sampled_from(["", " ", "1" * 5000, "9999999999.99", "10000000000", "1.005", "1.50"]),
    around(rules.NAME_MAX),
    around(rules.SKU_MAX),
    around(rules.DESCRIPTION_MAX),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=1),
)


def schema_load(payload: dict) -> dict | None:
    try:
        return ItemInputSchema().load(payload)
    except ValidationError:
        return None


def imported(payload: dict, check) -> rows.Item | None:
    item, _name, _errors = check(1, payload)
    return item


@settings(max_examples=2000, deadline=None)
@given(field=st.sampled_from(rules.ITEM_FIELDS), value=values)
@example(field="name", value="a\x00b")
@example(field="description", value="\ud800")
@example(field="quantity", value="+-5")
@example(field="quantity", value="\u0661")
@example(field="price", value="\u0661\u0662")
@example(field="sku", value=" " * 64)
def test_schema_and_import_accept_and_refuse_the_same_values(field, value):
    payload = {**VALID, field: value}
    # An import cannot tell an empty CSV cell from a missing one: for an optional field
    # both mean "not given", which the API writes by leaving the field out.
    absent = field in OPTIONAL and (value is None or value == "")
    api = schema_load({**VALID} if absent else payload)
    for check in (rows.validate, rows.check_fields):
        item = imported(payload, check)
        assert (api is None) == (item is None), (check.__name__, payload, api, item)
        if item is None:
            continue
        name, price, quantity, sku, description = item
        assert (name, Decimal(price), quantity) == (api["name"], api["price"], api["quantity"])
        assert (sku, description) == (api["sku"] or None, api["description"] or None)


@given(value=st.one_of(values, around(rules.STORE_NAME_MAX)))
@settings(max_examples=300, deadline=None)
def test_store_names_follow_the_name_rule(value):
    try:
        loaded = StoreInputSchema().load({"name": value})["name"]
    except ValidationError:
        loaded = None
    try:
        ruled = rules.store_name(value)
    except rules.Broken:
        ruled = None
    assert loaded == ruled


@pytest.mark.parametrize("text", ["a\x00", "\ud800", "x\udfffy"])
def test_refused_characters_are_shown_replaced_never_stored(text):
    assert not rules.storable(text)
    shown = rules.printable(text)
    assert rules.storable(shown) and "\ufffd" in shown
    with pytest.raises(rules.Broken, match=r"NUL|surrogate"):
        rules.text(text)
