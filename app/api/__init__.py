"""One blueprint module per resource."""

from __future__ import annotations

from flask import Flask

from app.api import auth, docs, health, imports, items, jobs, pages, stores, users
from app.extensions import api


def register_blueprints(app: Flask) -> None:
    docs.init_spec()
    for module in (auth, users, stores, items, imports, jobs, health):
        api.register_blueprint(module.blp)
    app.register_blueprint(docs.blp)
    app.register_blueprint(pages.blp)
