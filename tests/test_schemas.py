"""The hand-written dumpers on the read path say exactly what the documented schemas say."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace

from hypothesis import given
from hypothesis import strategies as st

from app.extensions import db
from app.models import Item, Store
from app.schemas import ItemSchema, StoreSchema, dump_item, dump_store

texts = st.one_of(st.none(), st.text(max_size=30))
moments = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(2300, 1, 1), timezones=st.just(UTC)
) | st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2300, 1, 1))
prices = st.decimals(min_value=0, max_value=Decimal("9999999999.99"), places=2) | st.decimals(
    min_value=0, max_value=Decimal("99999"), places=4
)


@given(
    id=st.integers(1, 2**31 - 1),
    store_id=st.integers(1, 2**31 - 1),
    name=st.text(min_size=1, max_size=50),
    price=prices,
    quantity=st.integers(0, 2**31 - 1),
    sku=texts,
    description=texts,
    created_at=moments,
    updated_at=moments,
)
def test_dump_item_equals_the_item_schema(**fields):
    item = SimpleNamespace(**fields)
    assert dump_item(item) == ItemSchema().dump(item)


@given(
    id=st.integers(1, 2**31 - 1),
    name=st.text(min_size=1, max_size=80),
    owner=st.text(min_size=3, max_size=40),
    item_count=st.integers(0, 10**7),
    created_at=moments,
    updated_at=moments,
)
def test_dump_store_equals_the_store_schema(**fields):
    store = SimpleNamespace(**fields)
    assert dump_store(store) == StoreSchema().dump(store)


def test_dumpers_on_real_rows(client, alice, store):
    """And on rows as the database hands them back (Decimal prices, aware timestamps)."""
    created = client.post(
        f"/v1/stores/{store['id']}/items",
        json={"name": "Tea", "price": "2.5", "quantity": 3},
        headers=alice.headers,
    )
    assert created.status_code == 201
    with client.application.app_context():
        item = db.session.get(Item, created.json["id"])
        row = db.session.get(Store, store["id"])
        assert dump_item(item) == ItemSchema().dump(item)
        assert dump_store(row) == StoreSchema().dump(row)
        assert dump_item(item)["price"] == Decimal("2.50")
        assert item.created_at.tzinfo is not None and item.updated_at - item.created_at < timedelta(
            seconds=5
        )
