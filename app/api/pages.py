"""The browsable API's extras: the API root and what resource pages show beyond the resource."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, request, url_for

from app import negotiation
from app.representations import html
from app.schemas import dump_item
from app.services import catalog

blp = Blueprint("pages", __name__)
STORE_PAGE_ITEMS = 20


@blp.get("/")
def index() -> Response:
    """Where to start: links to the collections and the reference."""
    links = {
        "stores": url_for("stores.Stores", _external=True),
        "docs": url_for("docs.docs", _external=True),
        "openapi": request.url_root + "openapi.json",
        "health": url_for("health.healthz", _external=True),
    }
    return negotiation.render({"links": links}, resource="api")


@html.context_for("store")
def store_items(data: Any) -> dict[str, Any]:
    """A store's page lists its first items."""
    page = catalog.list_items(catalog.get_store(data["id"]), limit=STORE_PAGE_ITEMS, cursor=None)
    return {
        "items": [dump_item(i) for i in page.rows],
        "more_items": page.next_cursor is not None,
    }
