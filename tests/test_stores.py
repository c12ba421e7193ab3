"""Stores end to end: create, read, list, change, replace, delete, ownership."""

from __future__ import annotations

import pytest

from tests.conftest import unique_name
from tests.problems import assert_invalid, assert_problem, assert_unauthorized

STORE_KEYS = {"id", "name", "owner", "item_count", "created_at", "updated_at"}


def _create(client, account, name=None):
    return client.post(
        "/v1/stores", json={"name": name or unique_name("Store ")}, headers=account.headers
    )


def test_create_store(client, alice):
    response = _create(client, alice, "Corner Shop")
    assert response.status_code == 201
    body = response.json
    assert set(body) == STORE_KEYS
    assert response.headers["Location"] == f"/v1/stores/{body['id']}"
    assert body["name"] == "Corner Shop" and body["owner"] == alice.username
    assert body["item_count"] == 0
    assert body["created_at"].endswith("Z") and body["updated_at"].endswith("Z")
    assert client.get(response.headers["Location"]).json == body


def test_create_store_needs_a_token(client):
    assert_unauthorized(client.post("/v1/stores", json={"name": "Nope"}))


def test_store_name_is_trimmed_and_unique(client, alice, bob):
    assert _create(client, alice, "  Padded  ").json["name"] == "Padded"
    assert_problem(_create(client, alice, "Padded"), 409)
    assert_problem(_create(client, bob, "Padded"), 409)


INVALID_STORES = [
    ({"name": ""}, "name"),
    ({"name": "   "}, "name"),
    ({"name": "x" * 81}, "name"),
    ({"name": None}, "name"),
    ({"name": 12}, "name"),
    ({"name": ["a"]}, "name"),
    ({}, "name"),
    ({"name": "ok", "colour": "red"}, "colour"),
]


def test_store_validation(client, alice):
    for body, field in INVALID_STORES:
        response = client.post("/v1/stores", json=body, headers=alice.headers)
        assert_invalid(response, field, case=body)
    assert client.get("/v1/stores").json["stores"] == []


def test_store_name_bounds(client, alice):
    assert _create(client, alice, "x").status_code == 201
    assert _create(client, alice, "y" * 80).status_code == 201


def test_mass_assignment_is_impossible(client, alice, bob):
    body = {
        "name": "Honest",
        "id": 4242,
        "owner": bob.username,
        "item_count": 99,
        "created_at": "2000-01-01T00:00:00Z",
        "updated_at": "2000-01-01T00:00:00Z",
    }
    created = client.post("/v1/stores", json=body, headers=alice.headers).json
    assert created["id"] != 4242
    assert created["owner"] == alice.username and created["item_count"] == 0
    assert not created["created_at"].startswith("2000")
    patched = client.patch(
        f"/v1/stores/{created['id']}",
        json={"owner": bob.username, "id": 1, "created_at": "2000-01-01T00:00:00Z"},
        headers=alice.headers,
    ).json
    assert patched["owner"] == alice.username and patched["id"] == created["id"]
    assert patched["created_at"] == created["created_at"]


def test_read_missing_store_is_404(client):
    assert_problem(client.get("/v1/stores/999999"), 404)


def test_patch_and_put_rename(client, alice):
    store = _create(client, alice).json
    url = f"/v1/stores/{store['id']}"
    patched = client.patch(url, json={"name": "Renamed"}, headers=alice.headers)
    assert patched.status_code == 200 and patched.json["name"] == "Renamed"
    assert patched.json["updated_at"] >= store["updated_at"]
    # PATCH with nothing to change leaves the store as it was
    assert client.patch(url, json={}, headers=alice.headers).json["name"] == "Renamed"
    put = client.put(url, json={"name": "Replaced"}, headers=alice.headers)
    assert put.status_code == 200 and put.json["name"] == "Replaced"
    assert client.get(url).json["name"] == "Replaced"
    # renaming to its own name is not a conflict
    assert client.put(url, json={"name": "Replaced"}, headers=alice.headers).status_code == 200


def test_put_needs_the_whole_store(client, alice):
    store = _create(client, alice).json
    response = client.put(f"/v1/stores/{store['id']}", json={}, headers=alice.headers)
    assert_invalid(response, "name")


@pytest.mark.parametrize("method", ["patch", "put"])
def test_rename_to_a_taken_name_is_409(client, alice, method):
    first, second = _create(client, alice).json, _create(client, alice).json
    response = getattr(client, method)(
        f"/v1/stores/{second['id']}", json={"name": first["name"]}, headers=alice.headers
    )
    assert_problem(response, 409)


@pytest.mark.parametrize("method", ["patch", "put"])
def test_rename_validation(client, alice, method):
    store = _create(client, alice).json
    url = f"/v1/stores/{store['id']}"
    assert_invalid(getattr(client, method)(url, json={"name": ""}, headers=alice.headers), "name")
    response = getattr(client, method)(url, json={"name": "z" * 81}, headers=alice.headers)
    assert_invalid(response, "name")


def test_only_the_owner_may_change_or_delete(client, alice, bob):
    store = _create(client, alice).json
    url = f"/v1/stores/{store['id']}"
    assert_problem(client.patch(url, json={"name": "Mine"}, headers=bob.headers), 403)
    assert_problem(client.put(url, json={"name": "Mine"}, headers=bob.headers), 403)
    assert_problem(client.delete(url, headers=bob.headers), 403)
    assert client.get(url).json["name"] == store["name"]


def test_writes_without_a_token_are_401(client, alice):
    store = _create(client, alice).json
    url = f"/v1/stores/{store['id']}"
    assert_unauthorized(client.patch(url, json={"name": "x"}))
    assert_unauthorized(client.put(url, json={"name": "x"}))
    assert_unauthorized(client.delete(url))


def test_writes_to_a_missing_store_are_404(client, alice):
    for method in ("patch", "put", "delete"):
        response = getattr(client, method)(
            "/v1/stores/999999", json={"name": "x"}, headers=alice.headers
        )
        assert_problem(response, 404, case=method)


def test_delete_store_removes_its_items(client, alice):
    store = _create(client, alice).json
    other = _create(client, alice).json
    item_ids = []
    for name in ("a", "b", "c"):
        r = client.post(
            f"/v1/stores/{store['id']}/items",
            json={"name": name, "price": 1},
            headers=alice.headers,
        )
        item_ids.append(r.json["id"])
    kept = client.post(
        f"/v1/stores/{other['id']}/items", json={"name": "a", "price": 1}, headers=alice.headers
    ).json
    assert client.get(f"/v1/stores/{store['id']}").json["item_count"] == 3
    response = client.delete(f"/v1/stores/{store['id']}", headers=alice.headers)
    assert response.status_code == 204 and response.data == b""
    assert_problem(client.get(f"/v1/stores/{store['id']}"), 404)
    assert_problem(client.get(f"/v1/stores/{store['id']}/items"), 404)
    for item_id in item_ids:
        assert_problem(client.get(f"/v1/items/{item_id}"), 404)
    assert client.get(f"/v1/items/{kept['id']}").status_code == 200
    assert_problem(client.delete(f"/v1/stores/{store['id']}", headers=alice.headers), 404)


def test_item_count_follows_the_items(client, alice):
    store = _create(client, alice).json
    url = f"/v1/stores/{store['id']}"
    item = client.post(url + "/items", json={"name": "a", "price": 1}, headers=alice.headers)
    client.post(url + "/items", json={"name": "b", "price": 1}, headers=alice.headers)
    assert client.get(url).json["item_count"] == 2
    client.delete(f"/v1/items/{item.json['id']}", headers=alice.headers)
    assert client.get(url).json["item_count"] == 1
    listed = client.get("/v1/stores").json["stores"]
    assert [s["item_count"] for s in listed if s["id"] == store["id"]] == [1]


def test_list_stores_and_filter_by_name(client, alice):
    names = ["Corner Shop", "CORNER bakery", "Deli", "100% Pure", "under_score", "under-score"]
    for name in names:
        assert _create(client, alice, name).status_code == 201
    response = client.get("/v1/stores")
    assert response.status_code == 200
    assert set(response.json) == {"stores", "next"} and response.json["next"] is None
    assert [s["name"] for s in response.json["stores"]] == names  # by id

    def names_for(q: str) -> list[str]:
        return [s["name"] for s in client.get("/v1/stores", query_string={"q": q}).json["stores"]]

    assert names_for("corner") == ["Corner Shop", "CORNER bakery"]
    assert names_for("DELI") == ["Deli"]
    assert names_for("%") == ["100% Pure"]  # LIKE wildcards are literal
    assert names_for("_") == ["under_score"]
    assert names_for("r_s") == ["under_score"]
    assert names_for("nothing") == []
    assert names_for("") == names


def test_store_ids_in_urls_must_be_integers(client):
    assert_problem(client.get("/v1/stores/abc"), 404)
