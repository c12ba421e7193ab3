"""The async runner: async views run on long-lived event loops, one per call in flight."""

from __future__ import annotations

import asyncio
import inspect
import threading

import pytest
from flask import Flask, g, request

from app import StoresFlask, aio, errors
from app.api.items import Item, StoreItems
from app.api.stores import Store, Stores
from app.services.errors import NotFound


@pytest.fixture
def mini() -> Flask:
    """A small app of the same class as the service, with the service's error layer."""
    app = StoresFlask(__name__)
    errors.init_app(app)
    seen: list[tuple[int, int]] = []
    app.config["SEEN"] = seen

    @app.get("/where")
    async def where() -> dict:
        await asyncio.sleep(0)  # a real suspension point, resumed by the same loop
        seen.append((threading.get_ident(), id(asyncio.get_running_loop())))
        g.touched = True
        return {"q": request.args.get("q"), "loop": id(asyncio.get_running_loop())}

    @app.get("/slow")
    async def slow() -> dict:
        gate: threading.Barrier = app.config["GATE"]
        await asyncio.sleep(0)
        gate.wait(timeout=5)  # every caller is inside its coroutine at once
        return {"loop": id(asyncio.get_running_loop())}

    @app.get("/fails")
    async def fails() -> dict:
        raise RuntimeError("boom inside a coroutine")

    @app.get("/missing")
    async def missing() -> dict:
        raise NotFound("Nothing async here.")

    @app.get("/nested")
    async def nested() -> dict:
        async def inner() -> int:
            return 41

        # Sync code called from a coroutine that runs async code again: the thread's
        # loop is busy, so the runner must not try to re-enter it.
        return {"value": aio.to_sync(inner)() + 1}

    return app


def test_the_read_views_are_coroutines():
    for view in (Stores.get, Store.get, StoreItems.get, Item.get):
        assert inspect.iscoroutinefunction(inspect.unwrap(view))


def test_async_views_see_the_request_and_reuse_the_threads_loop(mini):
    client = mini.test_client()
    loops = {client.get("/where?q=x").json["loop"] for _ in range(5)}
    assert client.get("/where?q=x").json["q"] == "x"
    assert len(loops) == 1
    seen = mini.config["SEEN"]
    assert len({loop for _, loop in seen}) == 1 and len({t for t, _ in seen}) == 1


def test_calls_in_flight_at_once_each_have_a_loop_and_loops_are_reused(mini):
    mini.config["GATE"] = threading.Barrier(3)
    results: list[int] = []

    def call() -> None:
        results.append(mini.test_client().get("/slow").json["loop"])

    threads = [threading.Thread(target=call) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 3
    # The loops went back to the pool, open, and serve the next requests.
    later = {mini.test_client().get("/where").json["loop"] for _ in range(5)}
    assert later <= set(results)


def test_exceptions_in_coroutines_become_problems(mini):
    client = mini.test_client()
    r = client.get("/fails")
    assert r.status_code == 500
    assert r.mimetype == "application/problem+json"
    assert r.json["request_id"] and "boom" not in r.get_data(as_text=True)
    r = client.get("/missing")
    assert (r.status_code, r.json["detail"]) == (404, "Nothing async here.")
    # The loop survives a failed coroutine.
    assert client.get("/where").status_code == 200


def test_nested_async_from_sync_inside_a_coroutine(mini):
    assert mini.test_client().get("/nested").json == {"value": 42}


def test_real_async_views_answer_with_problems_too(client):
    r = client.get("/v1/stores/123456")
    assert r.status_code == 404 and r.mimetype == "application/problem+json"
    r = client.get("/v1/stores?limit=0")
    assert r.status_code == 422 and r.json["errors"][0]["field"] == "limit"
