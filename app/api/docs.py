"""Human-readable API reference rendered from the OpenAPI document."""

from __future__ import annotations

from typing import Any

from apispec import APISpec, BasePlugin
from flask import Blueprint, render_template

from app.extensions import api, limiter

blp = Blueprint("docs", __name__)
METHODS = ("get", "post", "put", "patch", "delete")
WRITES = ("post", "put", "patch", "delete")
# Paths whose writes only the store's owner may make (403 for anyone else).
OWNED_PREFIXES = ("/v1/stores/{store_id}", "/v1/items/{item_id}")
ERROR_RESPONSES = {
    401: ("Unauthorized", "Missing, malformed, expired or revoked token"),
    403: ("Forbidden", "Not the owner of the store"),
    404: ("NotFound", "No such resource"),
}


class ErrorResponsesPlugin(BasePlugin):
    """Documents the errors every operation can answer, so views need not repeat them.

    401 wherever a bearer token is required, 404 wherever the path names a resource,
    403 on the owner-only writes of stores and items.
    """

    def init_spec(self, spec: APISpec) -> None:
        problem = {"schema": {"$ref": "#/components/schemas/Problem"}}
        for name, description in ERROR_RESPONSES.values():
            if name not in spec.components.responses:
                spec.components.response(
                    name,
                    {
                        "description": description,
                        "content": {
                            "application/problem+json": problem,
                            "application/problem+xml": problem,
                        },
                    },
                )

    def operation_helper(
        self, path: str | None = None, operations: dict | None = None, **kwargs: Any
    ) -> None:
        path = path or ""
        for method, operation in (operations or {}).items():
            statuses = []
            if operation.get("security"):
                statuses.append(401)
            if "{" in path:
                statuses.append(404)
            if method in WRITES and operation.get("security") and path.startswith(OWNED_PREFIXES):
                statuses.append(403)
            responses = operation.setdefault("responses", {})
            for status in statuses:
                if status not in responses and str(status) not in responses:
                    ref = f"#/components/responses/{ERROR_RESPONSES[status][0]}"
                    responses[str(status)] = {"$ref": ref}


def init_spec() -> None:
    """Add the plugin to the API's spec before any blueprint is documented in it."""
    plugin = ErrorResponsesPlugin()
    plugin.init_spec(api.spec)
    api.spec.plugins.append(plugin)


@blp.get("/docs")
@limiter.exempt
def docs() -> str:
    """Every operation of /openapi.json: method, path, summary, parameters, responses."""
    spec = api.spec.to_dict()
    operations = [
        {"method": method.upper(), "path": path, **op}
        for path, item in spec.get("paths", {}).items()
        for method, op in item.items()
        if method in METHODS
    ]
    return render_template("docs.html", spec=spec, operations=operations)
