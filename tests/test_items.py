"""Items end to end: create, read, change, replace, delete, filters, sorts, ownership."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.conftest import unique_name
from tests.importing import get_job, post_import, run_queued
from tests.problems import assert_invalid, assert_problem, assert_unauthorized

ITEM_KEYS = {
    "id",
    "store_id",
    "name",
    "price",
    "quantity",
    "sku",
    "description",
    "created_at",
    "updated_at",
}


@pytest.fixture
def items_url(store) -> str:
    return f"/v1/stores/{store['id']}/items"


def _add(client, account, url, **fields):
    return client.post(url, json={"price": "1.00", **fields}, headers=account.headers)


def test_create_item_with_defaults(client, alice, store, items_url):
    response = client.post(items_url, json={"name": "Tea", "price": "2.50"}, headers=alice.headers)
    assert response.status_code == 201
    item = response.json
    assert set(item) == ITEM_KEYS
    assert response.headers["Location"] == f"/v1/items/{item['id']}"
    assert item["store_id"] == store["id"] and item["name"] == "Tea"
    assert item["price"] == 2.5 and item["quantity"] == 0
    assert item["sku"] is None and item["description"] is None
    assert item["created_at"].endswith("Z")
    assert client.get(response.headers["Location"]).json == item


def test_create_item_with_every_field(client, alice, items_url):
    fields = {"name": "Kettle", "price": 19.99, "quantity": 3, "sku": "K-1", "description": "d"}
    item = client.post(items_url, json=fields, headers=alice.headers).json
    assert {k: item[k] for k in fields} == fields


VALID_PRICES = [
    (0, 0),
    ("0", 0),
    (1, 1),
    ("2.5", 2.5),
    (3.1, 3.1),
    ("4.10", 4.1),
    ("5.000", 5),
    (6.50, 6.5),
    ("9999999999.99", 9999999999.99),
]
INVALID_PRICES = [
    -0.01,
    "-1",
    1.234,
    "0.001",
    0.1 + 0.2,
    "NaN",
    "nan",
    "Infinity",
    "-Infinity",
    "1e400",
    "10000000000",
    True,
    False,
    "abc",
    "",
    None,
    [],
    {},
    # Python's Decimal() reads these; a price is ASCII digits.
    "\u0661\u0662",  # Arabic-Indic 12
    "\u0661.\u0665\u0660",
    "\uff11",  # fullwidth 1
    "1_000",
    "\u00a01",  # after a no-break space
]
# One account and store for all the cases of a rule: password hashing is the slow part.
INVALID_FIELDS = [
    ({"name": ""}, "name"),
    ({"name": "  "}, "name"),
    ({"name": "n" * 201}, "name"),
    ({"name": None}, "name"),
    ({"name": 5}, "name"),
    ({"quantity": -1}, "quantity"),
    ({"quantity": 1.5}, "quantity"),
    ({"quantity": "many"}, "quantity"),
    ({"quantity": True}, "quantity"),
    ({"quantity": None}, "quantity"),
    ({"quantity": 2**31}, "quantity"),
    ({"sku": "s" * 65}, "sku"),
    ({"sku": 5}, "sku"),
    ({"description": "d" * 2001}, "description"),
    ({"description": ["x"]}, "description"),
    ({"colour": "red"}, "colour"),
]


def test_valid_prices(client, alice, items_url):
    for i, (price, expected) in enumerate(VALID_PRICES):
        response = _add(client, alice, items_url, name=f"p{i}", price=price)
        assert response.status_code == 201, (price, response.json)
        assert response.json["price"] == expected, price
        assert Decimal(str(response.json["price"])) == Decimal(str(expected)), price


def test_invalid_prices(client, alice, items_url):
    for price in INVALID_PRICES:
        response = client.post(items_url, json={"name": "P", "price": price}, headers=alice.headers)
        assert_invalid(response, "price", case=price)
    assert client.get(items_url).json["items"] == []


def test_prices_in_other_digits_are_refused_in_every_body_and_import(
    app, client, alice, items_url, store
):
    arabic_twelve = "\u0661\u0662"
    form = {"name": "Form", "price": arabic_twelve}
    assert_invalid(client.post(items_url, data=form, headers=alice.headers), "price")
    xml = f"<item><name>X</name><price>{arabic_twelve}</price></item>".encode()
    headers = {**alice.headers, "Content-Type": "application/xml"}
    assert_invalid(client.post(items_url, data=xml, headers=headers), "price")
    item = _add(client, alice, items_url, name="Kept").json
    response = client.patch(
        f"/v1/items/{item['id']}", json={"price": arabic_twelve}, headers=alice.headers
    )
    assert_invalid(response, "price")
    job = post_import(client, alice, store["id"], f"name,price\nA,{arabic_twelve}\nB,1\n")
    assert job.status_code == 202, job.json
    run_queued(app)
    done = get_job(client, alice, job.json["id"])
    assert done["progress"]["created"] == 1 and done["progress"]["failed"] == 1, done
    errors = client.get(f"/v1/jobs/{done['id']}/errors", headers=alice.headers).json["errors"]
    assert [(e["row"], e["field"]) for e in errors] == [(1, "price")]
    assert sorted(i["name"] for i in client.get(items_url).json["items"]) == ["B", "Kept"]


def test_item_validation_names_the_field(client, alice, items_url):
    for fields, bad in INVALID_FIELDS:
        body = {"name": "Valid", "price": 1, **fields}
        response = client.post(items_url, json=body, headers=alice.headers)
        assert_invalid(response, bad, case=fields)
    assert client.get(items_url).json["items"] == []


def test_missing_required_fields_are_named(client, alice, items_url):
    assert_invalid(client.post(items_url, json={}, headers=alice.headers), "name", "price")
    response = client.post(items_url, json={"name": -1, "price": -1}, headers=alice.headers)
    assert_invalid(response, "name", "price")


def test_item_field_bounds_are_accepted(client, alice, items_url):
    body = {
        "name": "n" * 200,
        "price": "0.00",
        "quantity": 0,
        "sku": "s" * 64,
        "description": "d" * 2000,
    }
    assert client.post(items_url, json=body, headers=alice.headers).status_code == 201
    response = _add(client, alice, items_url, name="m", quantity=2**31 - 1)
    assert response.status_code == 201


def test_item_names_are_unique_within_a_store_only(client, alice, items_url):
    assert _add(client, alice, items_url, name="Tea").status_code == 201
    assert_problem(_add(client, alice, items_url, name="Tea"), 409)
    other = client.post(
        "/v1/stores", json={"name": unique_name("Other ")}, headers=alice.headers
    ).json
    other_url = f"/v1/stores/{other['id']}/items"
    assert _add(client, alice, other_url, name="Tea").status_code == 201


@pytest.mark.parametrize("method", ["patch", "put"])
def test_renaming_an_item_to_a_taken_name_is_409(client, alice, items_url, method):
    _add(client, alice, items_url, name="First")
    second = _add(client, alice, items_url, name="Second").json
    response = getattr(client, method)(
        f"/v1/items/{second['id']}", json={"name": "First", "price": 1}, headers=alice.headers
    )
    assert_problem(response, 409)
    assert client.get(f"/v1/items/{second['id']}").json["name"] == "Second"


def test_patch_changes_only_what_is_given(client, alice, items_url):
    item = _add(client, alice, items_url, name="Tea", quantity=5, sku="T1", description="d").json
    url = f"/v1/items/{item['id']}"
    response = client.patch(url, json={"price": "2.75"}, headers=alice.headers)
    assert response.status_code == 200
    assert response.json == {
        **item,
        "price": 2.75,
        "updated_at": response.json["updated_at"],
    }
    cleared = client.patch(url, json={"sku": None}, headers=alice.headers).json
    assert cleared["sku"] is None and cleared["quantity"] == 5
    assert client.patch(url, json={"name": "Tea"}, headers=alice.headers).status_code == 200


@pytest.mark.parametrize("content_type", [None, "application/json", "application/xml"])
def test_a_write_without_a_body_is_422(client, alice, store, items_url, content_type):
    """The spec requires a body on every write: a PATCH, whose fields are all optional,
    names the body; a POST or PUT names the fields it lacks."""
    item = _add(client, alice, items_url, name="Tea").json
    headers = {**alice.headers, **({"Content-Type": content_type} if content_type else {})}
    for url in (f"/v1/items/{item['id']}", f"/v1/stores/{store['id']}"):
        problem = assert_invalid(client.patch(url, headers=headers), "body")
        assert "{}" in problem["errors"][0]["message"]
        assert client.patch(url, json={}, headers=alice.headers).status_code == 200
    assert_invalid(client.put(f"/v1/items/{item['id']}", headers=headers), "name", "price")
    assert_invalid(client.put(f"/v1/stores/{store['id']}", headers=headers), "name")
    assert_invalid(client.post(items_url, headers=headers), "name", "price")
    assert client.get(items_url).json["items"] == [item]


def test_put_replaces_the_whole_item(client, alice, items_url):
    item = _add(client, alice, items_url, name="Tea", quantity=5, sku="T1", description="d").json
    url = f"/v1/items/{item['id']}"
    response = client.put(url, json={"name": "Green tea", "price": 3}, headers=alice.headers)
    assert response.status_code == 200
    body = response.json
    assert body["name"] == "Green tea" and body["price"] == 3
    assert body["quantity"] == 0 and body["sku"] is None and body["description"] is None
    assert client.get(url).json == body
    assert_invalid(client.put(url, json={"name": "x"}, headers=alice.headers), "price")


@pytest.mark.parametrize("method", ["patch", "put"])
def test_item_update_validation(client, alice, items_url, method):
    item = _add(client, alice, items_url, name="Tea").json
    url = f"/v1/items/{item['id']}"
    cases = [
        ({"price": -1}, "price"),
        ({"price": "1.001"}, "price"),
        ({"quantity": -1}, "quantity"),
        ({"name": ""}, "name"),
        ({"sku": "s" * 65}, "sku"),
        ({"description": "d" * 2001}, "description"),
        ({"bogus": 1}, "bogus"),
    ]
    for fields, bad in cases:
        body = {"name": "Tea", "price": 1, **fields}
        assert_invalid(getattr(client, method)(url, json=body, headers=alice.headers), bad)


def test_item_mass_assignment_is_impossible(client, alice, bob, items_url, store):
    theirs = client.post("/v1/stores", json={"name": unique_name("B")}, headers=bob.headers).json
    body = {
        "name": "Tea",
        "price": 1,
        "id": 777777,
        "store_id": theirs["id"],
        "created_at": "2000-01-01T00:00:00Z",
    }
    item = client.post(items_url, json=body, headers=alice.headers).json
    assert item["id"] != 777777 and item["store_id"] == store["id"]
    assert not item["created_at"].startswith("2000")
    url = f"/v1/items/{item['id']}"
    moved = client.patch(url, json={"store_id": theirs["id"], "id": 1}, headers=alice.headers)
    assert moved.json["store_id"] == store["id"] and moved.json["id"] == item["id"]
    assert client.get(f"/v1/stores/{theirs['id']}").json["item_count"] == 0


def test_only_the_store_owner_may_touch_items(client, alice, bob, items_url):
    item = _add(client, alice, items_url, name="Tea").json
    url = f"/v1/items/{item['id']}"
    assert_problem(_add(client, bob, items_url, name="Sneaky"), 403)
    assert_problem(client.patch(url, json={"price": 0}, headers=bob.headers), 403)
    assert_problem(client.put(url, json={"name": "x", "price": 0}, headers=bob.headers), 403)
    assert_problem(client.delete(url, headers=bob.headers), 403)
    assert client.get(url).json == item


def test_item_writes_need_a_token(client, alice, items_url):
    item = _add(client, alice, items_url, name="Tea").json
    url = f"/v1/items/{item['id']}"
    assert_unauthorized(client.post(items_url, json={"name": "x", "price": 1}))
    assert_unauthorized(client.patch(url, json={"price": 0}))
    assert_unauthorized(client.put(url, json={"name": "x", "price": 0}))
    assert_unauthorized(client.delete(url))


def test_missing_store_or_item_is_404(client, alice):
    assert_problem(client.get("/v1/stores/999999/items"), 404)
    assert_problem(_add(client, alice, "/v1/stores/999999/items", name="x"), 404)
    assert_problem(client.get("/v1/items/999999"), 404)
    for method in ("patch", "put", "delete"):
        response = getattr(client, method)(
            "/v1/items/999999", json={"name": "x", "price": 1}, headers=alice.headers
        )
        assert_problem(response, 404)


def test_delete_item(client, alice, items_url):
    item = _add(client, alice, items_url, name="Tea").json
    url = f"/v1/items/{item['id']}"
    response = client.delete(url, headers=alice.headers)
    assert response.status_code == 204 and response.data == b""
    assert_problem(client.get(url), 404)
    assert_problem(client.delete(url, headers=alice.headers), 404)
    # the name is free again
    assert _add(client, alice, items_url, name="Tea").status_code == 201


def test_create_item_from_a_form(client, alice, items_url):
    form = {"name": "Scones", "price": "3.20", "quantity": "12", "sku": "SC"}
    response = client.post(items_url, data=form, headers=alice.headers)
    assert response.status_code == 201, response.json
    assert response.json["price"] == 3.2 and response.json["quantity"] == 12
    response = client.post(
        items_url, data={"name": "Bad", "price": "x", "quantity": "1.5"}, headers=alice.headers
    )
    assert_invalid(response, "price", "quantity")


def test_empty_form_inputs_mean_not_given(client, alice, items_url):
    form = {"name": "Jam", "price": "4", "quantity": "", "sku": "", "description": ""}
    response = client.post(items_url, data=form, headers=alice.headers)
    assert response.status_code == 201, response.json
    item = response.json
    assert (item["quantity"], item["sku"], item["description"]) == (0, None, None)
    url = f"/v1/items/{item['id']}"
    patched = client.patch(url, data={"price": "", "quantity": "7"}, headers=alice.headers)
    assert patched.status_code == 200 and patched.json["quantity"] == 7
    assert patched.json["price"] == 4
    assert_invalid(
        client.post(items_url, data={"name": "", "price": ""}, headers=alice.headers),
        "name",
        "price",
    )
    multipart = client.post(
        items_url,
        data={"name": "Marmalade", "price": "2.10", "sku": ""},
        content_type="multipart/form-data",
        headers=alice.headers,
    )
    assert multipart.status_code == 201 and multipart.json["sku"] is None


# --- lists: filters and sorts ------------------------------------------------------------

CATALOGUE = [
    ("Green Tea", "2.50"),
    ("black tea", "2.50"),
    ("Coffee", "4.00"),
    ("100% Juice", "3.00"),
    ("tea_bag", "0.10"),
    ("teaXbag", "0.00"),
    ("Cake", "12.99"),
]


@pytest.fixture
def catalogue(client, alice, items_url) -> list[dict]:
    return [_add(client, alice, items_url, name=n, price=p).json for n, p in CATALOGUE]


def _names(client, url, **query) -> list[str]:
    response = client.get(url, query_string=query)
    assert response.status_code == 200, response.json
    assert set(response.json) == {"items", "next"}
    return [i["name"] for i in response.json["items"]]


def test_filter_by_name(client, items_url, catalogue):
    assert _names(client, items_url, q="TEA") == ["Green Tea", "black tea", "tea_bag", "teaXbag"]
    assert _names(client, items_url, q="%") == ["100% Juice"]
    assert _names(client, items_url, q="a_b") == ["tea_bag"]
    assert _names(client, items_url, q="zzz") == []


def test_filter_by_price(client, items_url, catalogue):
    assert _names(client, items_url, min_price="2.50", max_price="4") == [
        "Green Tea",
        "black tea",
        "Coffee",
        "100% Juice",
    ]
    assert _names(client, items_url, max_price=0) == ["teaXbag"]
    assert _names(client, items_url, min_price="12.99") == ["Cake"]
    assert _names(client, items_url, min_price=5, max_price=1) == []
    assert _names(client, items_url, q="tea", max_price="1") == ["tea_bag", "teaXbag"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"min_price": "abc"}, "min_price"),
        ({"max_price": "-1"}, "max_price"),
        ({"min_price": "NaN"}, "min_price"),
        ({"min_price": "\u0661"}, "min_price"),
        ({"max_price": "\uff19"}, "max_price"),
        ({"sort": "colour"}, "sort"),
        ({"limit": "0"}, "limit"),
        ({"limit": "501"}, "limit"),
        ({"limit": "ten"}, "limit"),
    ],
)
def test_list_argument_validation(client, items_url, query, field):
    assert_invalid(client.get(items_url, query_string=query), field)


def test_every_sort(client, items_url, catalogue):
    def ids(sort: str) -> list[int]:
        return [i["id"] for i in client.get(items_url, query_string={"sort": sort}).json["items"]]

    by_id = sorted(i["id"] for i in catalogue)
    assert ids("id") == by_id == [i["id"] for i in client.get(items_url).json["items"]]
    assert ids("-id") == by_id[::-1]
    price = [i["id"] for i in sorted(catalogue, key=lambda i: (Decimal(str(i["price"])), i["id"]))]
    assert ids("price") == price
    assert ids("-price") == price[::-1]
    names = [i["name"] for i in client.get(items_url, query_string={"sort": "name"}).json["items"]]
    assert len(names) == len(CATALOGUE)
    # the database's collation decides case order; the list must follow one total order
    assert ids("-name") == ids("name")[::-1]
    assert names.index("Green Tea") < names.index("teaXbag")
