"""Benchmark-only WSGI apps, served by gunicorn with the service's own ``gunicorn.conf.py``.

- ``baseline``: a bare Flask ``def`` view returning a constant JSON body, the same bytes
  as the cached page being compared (``BENCH_BODY_FILE``).
- ``def_view`` / ``async_view``: the same view written ``def`` and ``async def`` (awaiting
  nothing), on the service's Flask class (``StoresFlask``: per-thread event loop).
- ``stock_async_view``: ``async def`` on plain Flask (asgiref), for reference.
"""

from __future__ import annotations

import os

from flask import Flask, Response

from app import StoresFlask

with open(os.environ.get("BENCH_BODY_FILE", os.devnull), "rb") as _file:
    BODY = _file.read() or b'{"ok":true}'


def _respond() -> Response:
    return Response(BODY, mimetype="application/json")


baseline = Flask("baseline")
baseline.add_url_rule("/page", "page", _respond)

def_view = StoresFlask("def_view")
def_view.add_url_rule("/page", "page", _respond)


async def _respond_async() -> Response:
    return Response(BODY, mimetype="application/json")


async_view = StoresFlask("async_view")
async_view.add_url_rule("/page", "page", _respond_async)

stock_async_view = Flask("stock_async_view")
stock_async_view.add_url_rule("/page", "page", _respond_async)
