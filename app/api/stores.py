"""Stores: list, create, read, change, delete."""

from __future__ import annotations

from flask import Response, url_for
from flask.views import MethodView
from flask_jwt_extended import jwt_required

from app import caching, negotiation
from app.api.common import Blueprint, caller, list_response
from app.schemas import (
    ProblemSchema,
    StoreInputSchema,
    StoreListArgsSchema,
    StoreListSchema,
    StorePatchSchema,
    StoreSchema,
    dump_store,
)
from app.services import catalog

blp = Blueprint("stores", __name__, url_prefix="/v1/stores", description="Stores")


def render_store(store, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return negotiation.render(dump_store(store), status, headers, resource="store")


@blp.route("")
class Stores(MethodView):
    @caching.cached
    @blp.arguments(StoreListArgsSchema, location="query")
    @blp.response(200, StoreListSchema)
    async def get(self, args: dict) -> Response:
        """List stores"""
        page = catalog.list_stores(q=args.get("q"), limit=args["limit"], cursor=args.get("cursor"))
        return list_response("stores", [dump_store(s) for s in page.rows], page)

    @jwt_required()
    @blp.arguments(StoreInputSchema)
    @blp.response(201, StoreSchema)
    @blp.alt_response(409, schema=ProblemSchema, description="Name taken")
    @blp.doc(security=[{"bearerAuth": []}])
    def post(self, body: dict) -> Response:
        """Create a store"""
        store = catalog.create_store(owner=caller(), name=body["name"])
        location = url_for("stores.Store", store_id=store.id)
        return render_store(store, 201, {"Location": location})


@blp.route("/<int:store_id>")
class Store(MethodView):
    @caching.cached
    @blp.response(200, StoreSchema)
    async def get(self, store_id: int) -> Response:
        """Read a store"""
        return render_store(catalog.get_store(store_id))

    @jwt_required()
    @blp.arguments(StorePatchSchema)
    @blp.response(200, StoreSchema)
    @blp.doc(security=[{"bearerAuth": []}])
    def patch(self, body: dict, store_id: int) -> Response:
        """Change some fields of a store (owner only)"""
        store = catalog.update_store(catalog.get_store(store_id), user=caller(), changes=body)
        return render_store(store)

    @jwt_required()
    @blp.arguments(StoreInputSchema)
    @blp.response(200, StoreSchema)
    @blp.doc(security=[{"bearerAuth": []}])
    def put(self, body: dict, store_id: int) -> Response:
        """Replace a store (owner only)"""
        store = catalog.update_store(catalog.get_store(store_id), user=caller(), changes=body)
        return render_store(store)

    @jwt_required()
    @blp.response(204)
    @blp.doc(security=[{"bearerAuth": []}])
    def delete(self, store_id: int) -> Response:
        """Delete a store and its items (owner only)"""
        catalog.delete_store(catalog.get_store(store_id), user=caller())
        return negotiation.no_content()
