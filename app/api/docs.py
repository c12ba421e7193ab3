"""Human-readable API reference rendered from the OpenAPI document."""

from __future__ import annotations

from flask import Blueprint, render_template

from app.extensions import api, limiter

blp = Blueprint("docs", __name__)
METHODS = ("get", "post", "put", "patch", "delete")


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
