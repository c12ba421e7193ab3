"""Items of a store: list, create, read, change, delete."""

from __future__ import annotations

from flask import Response, url_for
from flask.views import MethodView
from flask_jwt_extended import jwt_required

from app import caching, negotiation
from app.api.common import Blueprint, caller, list_response
from app.schemas import (
    ItemInputSchema,
    ItemListArgsSchema,
    ItemListSchema,
    ItemPatchSchema,
    ItemSchema,
    ProblemSchema,
    dump_item,
)
from app.services import catalog

blp = Blueprint("items", __name__, url_prefix="/v1", description="Items of a store")
ITEM_CSV_COLUMNS = tuple(ItemSchema().fields)


def render_item(item, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return negotiation.render(dump_item(item), status, headers, resource="item")


def items_csv(store, *, sort: str, filters: dict) -> Response:
    """Every matching item as CSV, streamed in keyset batches (memory stays flat)."""
    rows = (dump_item(i) for i in catalog.iter_items(store, sort=sort, **filters))
    filename = f"store-{store.id}-items.csv"
    return negotiation.csv_response(ITEM_CSV_COLUMNS, rows, filename=filename)


@blp.route("/stores/<int:store_id>/items")
class StoreItems(MethodView):
    @caching.cached
    @blp.arguments(ItemListArgsSchema, location="query")
    @blp.response(200, ItemListSchema)
    @blp.doc(**negotiation.CSV_DOC)
    async def get(self, args: dict, store_id: int) -> Response:
        """List a store's items (also as CSV: every matching item, no pagination)"""
        store = catalog.get_store(store_id)
        filters = {k: args.get(k) for k in ("q", "min_price", "max_price")}
        if negotiation.negotiate(negotiation.LIST_FORMATS) == "csv":
            return items_csv(store, sort=args["sort"], filters=filters)
        page = catalog.list_items(
            store, **filters, sort=args["sort"], limit=args["limit"], cursor=args.get("cursor")
        )
        return list_response("items", [dump_item(i) for i in page.rows], page)

    @jwt_required()
    @blp.arguments(ItemInputSchema)
    @blp.response(201, ItemSchema)
    @blp.alt_response(409, schema=ProblemSchema, description="Name taken in this store")
    @blp.doc(security=[{"bearerAuth": []}])
    def post(self, body: dict, store_id: int) -> Response:
        """Add an item to a store (owner only)"""
        item = catalog.create_item(catalog.get_store(store_id), user=caller(), fields=body)
        return render_item(item, 201, {"Location": url_for("items.Item", item_id=item.id)})


@blp.route("/items/<int:item_id>")
class Item(MethodView):
    @caching.cached
    @blp.response(200, ItemSchema)
    async def get(self, item_id: int) -> Response:
        """Read an item"""
        return render_item(catalog.get_item(item_id))

    @jwt_required()
    @blp.arguments(ItemPatchSchema)
    @blp.response(200, ItemSchema)
    @blp.doc(security=[{"bearerAuth": []}])
    def patch(self, body: dict, item_id: int) -> Response:
        """Change some fields of an item (store owner only)"""
        item = catalog.update_item(catalog.get_item(item_id), user=caller(), changes=body)
        return render_item(item)

    @jwt_required()
    @blp.arguments(ItemInputSchema)
    @blp.response(200, ItemSchema)
    @blp.doc(security=[{"bearerAuth": []}])
    def put(self, body: dict, item_id: int) -> Response:
        """Replace an item (store owner only)"""
        item = catalog.update_item(catalog.get_item(item_id), user=caller(), changes=body)
        return render_item(item)

    @jwt_required()
    @blp.response(204)
    @blp.doc(security=[{"bearerAuth": []}])
    def delete(self, item_id: int) -> Response:
        """Delete an item (store owner only)"""
        catalog.delete_item(catalog.get_item(item_id), user=caller())
        return negotiation.no_content()
