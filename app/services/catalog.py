"""Stores and items: the rules for creating, changing, deleting and querying them."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from flask import current_app
from sqlalchemy import Select, delete, select
from sqlalchemy.exc import IntegrityError

from app import signals
from app.extensions import db
from app.models import Item, Job, Store, User
from app.rules import ITEM_FIELDS
from app.services import jobs
from app.services.errors import Conflict, Forbidden, NotFound
from app.services.pagination import Page, SortKey, paginate

ITEM_SORTS: dict[str, SortKey] = {
    "id": SortKey((Item.id,)),
    "-id": SortKey((Item.id,), descending=True),
    "name": SortKey((Item.name, Item.id)),
    "-name": SortKey((Item.name, Item.id), descending=True),
    "price": SortKey((Item.price, Item.id)),
    "-price": SortKey((Item.price, Item.id), descending=True),
}


def store_changed(store_id: int) -> None:
    """Announce a committed change to a store or its items: the one sender of
    ``signals.store_changed`` (bulk imports call this too); the read cache listens."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]  # the sender
    signals.store_changed.send(app, store_id=store_id)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _commit_or_conflict(message: str) -> None:
    try:
        db.session.commit()
    except IntegrityError as exc:
        db.session.rollback()
        raise Conflict(message) from exc


# --- stores ---------------------------------------------------------------------------


# Ids are 32-bit integer columns: a larger id in a URL names nothing, and PostgreSQL
# would refuse to compare it (a 500) rather than find no row.
MAX_ID = 2**31 - 1


def get_store(store_id: int) -> Store:
    store = db.session.get(Store, store_id) if 0 < store_id <= MAX_ID else None
    if store is None:
        raise NotFound(f"No store with id {store_id}.")
    return store


def require_owner(store: Store, user: User) -> None:
    """Only a store's owner may change it or its items."""
    if store.owner_id != user.id:
        raise Forbidden(f"Only the owner of store {store.id} may change it.")


def _store_name_taken(name: str, *, exclude_id: int | None = None) -> bool:
    query = select(Store.id).where(Store.name == name)
    if exclude_id is not None:
        query = query.where(Store.id != exclude_id)
    return db.session.scalar(query) is not None


def create_store(*, owner: User, name: str) -> Store:
    if _store_name_taken(name):
        raise Conflict(f"A store named {name!r} already exists.")
    store = Store(name=name, owner_id=owner.id)
    db.session.add(store)
    _commit_or_conflict(f"A store named {name!r} already exists.")
    db.session.refresh(store)
    store_changed(store.id)
    return store


def update_store(store: Store, *, user: User, changes: dict[str, Any]) -> Store:
    require_owner(store, user)
    name = changes.get("name")
    if name is not None and name != store.name:
        if _store_name_taken(name, exclude_id=store.id):
            raise Conflict(f"A store named {name!r} already exists.")
        store.name = name
    _commit_or_conflict(f"A store named {name!r} already exists.")
    db.session.refresh(store)
    store_changed(store.id)
    return store


def delete_store(store: Store, *, user: User) -> None:
    """Delete a store and its items. Its jobs outlive it (``store_id`` becomes NULL): an
    unfinished one ends ``failed``, naming the deletion."""
    require_owner(store, user)
    store_id = store.id
    # First wait for an import's chunk in flight (PostgreSQL: it holds a key-share lock
    # on the store row until it commits); taking the job rows first would deadlock with
    # that chunk's checkpoint.
    db.session.execute(select(Store.id).where(Store.id == store_id).with_for_update())
    job_ids = tuple(db.session.scalars(select(Job.id).where(Job.store_id == store_id)))
    jobs.end_for_deleted_store(store_id)
    # Explicit delete: SQLite enforces ON DELETE CASCADE only with foreign_keys=ON.
    db.session.execute(delete(Item).where(Item.store_id == store_id))
    db.session.delete(store)
    db.session.commit()
    jobs.announce(*job_ids)  # ended, or their store_id is NULL now (ON DELETE SET NULL)
    store_changed(store_id)


def list_stores(*, q: str | None, limit: int, cursor: str | None) -> Page:
    query = select(Store)
    if q:
        query = query.where(Store.name.ilike(f"%{_escape_like(q)}%", escape="\\"))
    return paginate(query, SortKey((Store.id,)), limit=limit, cursor=cursor)


# --- items ----------------------------------------------------------------------------


def get_item(item_id: int) -> Item:
    item = db.session.get(Item, item_id) if 0 < item_id <= MAX_ID else None
    if item is None:
        raise NotFound(f"No item with id {item_id}.")
    return item


def _item_name_taken(store_id: int, name: str, *, exclude_id: int | None = None) -> bool:
    query = select(Item.id).where(Item.store_id == store_id, Item.name == name)
    if exclude_id is not None:
        query = query.where(Item.id != exclude_id)
    return db.session.scalar(query) is not None


def create_item(store: Store, *, user: User, fields: dict[str, Any]) -> Item:
    require_owner(store, user)
    name = fields["name"]
    message = f"Store {store.id} already has an item named {name!r}."
    if _item_name_taken(store.id, name):
        raise Conflict(message)
    item = Item(store_id=store.id, **{k: fields[k] for k in ITEM_FIELDS if k in fields})
    db.session.add(item)
    _commit_or_conflict(message)
    db.session.refresh(item)
    store_changed(store.id)
    return item


def update_item(item: Item, *, user: User, changes: dict[str, Any]) -> Item:
    """Apply ``changes`` (a PATCH, or a whole item for PUT) to an item."""
    store = get_store(item.store_id)
    require_owner(store, user)
    name = changes.get("name", item.name)
    message = f"Store {store.id} already has an item named {name!r}."
    if name != item.name and _item_name_taken(store.id, name, exclude_id=item.id):
        raise Conflict(message)
    for key in ITEM_FIELDS:
        if key in changes:
            setattr(item, key, changes[key])
    _commit_or_conflict(message)
    db.session.refresh(item)
    store_changed(store.id)
    return item


def delete_item(item: Item, *, user: User) -> None:
    store = get_store(item.store_id)
    require_owner(store, user)
    db.session.delete(item)
    db.session.commit()
    store_changed(store.id)


def _item_query(
    store_id: int, *, q: str | None, min_price: Decimal | None, max_price: Decimal | None
) -> Select:
    query = select(Item).where(Item.store_id == store_id)
    if q:
        query = query.where(Item.name.ilike(f"%{_escape_like(q)}%", escape="\\"))
    if min_price is not None:
        query = query.where(Item.price >= min_price)
    if max_price is not None:
        query = query.where(Item.price <= max_price)
    return query


def list_items(
    store: Store,
    *,
    q: str | None = None,
    min_price: Decimal | None = None,
    max_price: Decimal | None = None,
    sort: str = "id",
    limit: int,
    cursor: str | None,
) -> Page:
    query = _item_query(store.id, q=q, min_price=min_price, max_price=max_price)
    return paginate(query, ITEM_SORTS[sort], limit=limit, cursor=cursor)


def iter_items(
    store: Store,
    *,
    q: str | None = None,
    min_price: Decimal | None = None,
    max_price: Decimal | None = None,
    sort: str = "id",
    batch: int = 1000,
) -> Iterator[Item]:
    """Every matching item, fetched in keyset batches so memory stays flat (CSV export)."""
    cursor: str | None = None
    while True:
        page = list_items(
            store,
            q=q,
            min_price=min_price,
            max_price=max_price,
            sort=sort,
            limit=batch,
            cursor=cursor,
        )
        yield from page.rows
        if page.next_cursor is None:
            return
        cursor = page.next_cursor
        db.session.expunge_all()
