"""Choosing a representation: Accept (q-values, wildcards, specificity), ?format=, 406, Vary."""

from __future__ import annotations

import pytest

from app.negotiation import DEFAULT_FORMATS, LIST_FORMATS, MEDIA_TYPES, choose, parse_accept
from tests.problems import assert_problem

CONTENT_TYPES = {
    "json": "application/json",
    "xml": "application/xml; charset=utf-8",
    "html": "text/html; charset=utf-8",
    "csv": "text/csv; charset=utf-8",
}


def _choose(header: str, formats=DEFAULT_FORMATS) -> str | None:
    return choose(parse_accept(header), {f: (MEDIA_TYPES[f],) for f in formats})


@pytest.mark.parametrize(
    ("accept", "formats", "expected"),
    [
        ("text/html;q=0.9, application/xml", DEFAULT_FORMATS, "xml"),
        ("application/*;q=0.5, text/html;q=0", DEFAULT_FORMATS, "json"),
        ("application/xml;q=0.5, application/*;q=0.4", DEFAULT_FORMATS, "xml"),
        ("*/*", DEFAULT_FORMATS, "json"),
        ("*/*;q=0.1, text/html", DEFAULT_FORMATS, "html"),
        ("application/json;q=0, */*", DEFAULT_FORMATS, "xml"),
        ("text/*, text/html;q=0", LIST_FORMATS, "csv"),
        ("text/*, text/html;q=0", DEFAULT_FORMATS, None),
        ("text/*", LIST_FORMATS, "html"),
        ("text/csv;q=0.4, text/html;q=0.3", LIST_FORMATS, "csv"),
        ("application/json;q=0.5, application/xml;q=0.5", DEFAULT_FORMATS, "json"),
        ("application/xml;q=0.5, application/json;q=0.5", DEFAULT_FORMATS, "json"),
        # a browser's header: HTML first
        (
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
            DEFAULT_FORMATS,
            "html",
        ),
        # parameters: charset=utf-8 is what we serve; other parameters do not match
        ("application/json; charset=UTF-8", DEFAULT_FORMATS, "json"),
        ("text/html;level=1", DEFAULT_FORMATS, None),
        ("text/html;level=1, application/xml;q=0.1", DEFAULT_FORMATS, "xml"),
        ("text/html;level=1;q=0, text/html", DEFAULT_FORMATS, "html"),
        # case-insensitive types; invalid q-values and ranges are skipped
        ("TEXT/HTML", DEFAULT_FORMATS, "html"),
        ("text/html;q=2, application/xml", DEFAULT_FORMATS, "xml"),
        ("text/html;q=abc, application/xml;q=0.5", DEFAULT_FORMATS, "xml"),
        ("*/html, application/xml", DEFAULT_FORMATS, "xml"),
        ("image/png", DEFAULT_FORMATS, None),
        ("*/*;q=0", DEFAULT_FORMATS, None),
        ("text/html;q=0.001, application/xml;q=0.002", DEFAULT_FORMATS, "xml"),
    ],
)
def test_accept_selection_follows_rfc_9110(accept, formats, expected):
    assert _choose(accept, formats) == expected


def test_parse_accept_reads_q_values_and_skips_garbage():
    ranges = parse_accept('text/html;q=0.5;ext="a,b", application/xml, nonsense, ;;')
    assert [(r.type, r.subtype, r.q) for r in ranges] == [
        ("text", "html", 0.5),
        ("application", "xml", 1.0),
    ]


# --- every endpoint, every representation ---------------------------------------------


def _get_endpoints(store: dict, alice) -> list[tuple[str, dict[str, str]]]:
    return [
        ("/v1/stores", {}),
        (f"/v1/stores/{store['id']}", {}),
        (f"/v1/stores/{store['id']}/items", {}),
        (f"/v1/items/{store['item_id']}", {}),
        (f"/v1/users/{alice.username}", {}),
        ("/v1/auth/me", alice.headers),
        ("/healthz", {}),
        ("/", {}),
    ]


@pytest.fixture
def catalog(client, alice, store) -> dict:
    r = client.post(
        f"/v1/stores/{store['id']}/items", json={"name": "Tea", "price": 2}, headers=alice.headers
    )
    assert r.status_code == 201
    return {**store, "item_id": r.json["id"]}


@pytest.mark.parametrize("fmt", ["json", "xml", "html"])
def test_every_get_endpoint_answers_in_each_format_by_accept_and_by_query(
    client, alice, catalog, fmt
):
    for path, headers in _get_endpoints(catalog, alice):
        by_accept = client.get(path, headers={**headers, "Accept": MEDIA_TYPES[fmt]})
        by_query = client.get(f"{path}?format={fmt}", headers={**headers, "Accept": "image/png"})
        for r in (by_accept, by_query):
            assert r.status_code == 200, (path, fmt, r.data[:300])
            assert r.headers["Content-Type"] == CONTENT_TYPES[fmt], path
            assert "Accept" in r.headers["Vary"], path
        if fmt == "html":  # links on a page asked for with ?format=html keep it
            assert by_accept.data.startswith(b"<!doctype html>")
            assert by_query.data.startswith(b"<!doctype html>")
        else:
            assert by_accept.data == by_query.data, path


def test_readiness_negotiates(client):
    r = client.get("/readyz?format=xml")
    assert r.status_code in (200, 503)
    assert r.headers["Content-Type"] == CONTENT_TYPES["xml"]
    assert b"<checks><database>" in r.data


def test_no_accept_and_wildcards_mean_json(client, catalog):
    for accept in (None, "", "*/*", "application/*", "*/*;q=0.8, image/png"):
        headers = {} if accept is None else {"Accept": accept}
        r = client.get(f"/v1/stores/{catalog['id']}", headers=headers)
        assert r.status_code == 200 and r.headers["Content-Type"] == "application/json", accept
        assert r.json["name"] == catalog["name"]


def test_q_values_order_the_choice(client, catalog):
    path = f"/v1/stores/{catalog['id']}"
    r = client.get(path, headers={"Accept": "text/html;q=0.9, application/xml"})
    assert r.headers["Content-Type"] == CONTENT_TYPES["xml"]
    r = client.get(path, headers={"Accept": "application/xml;q=0.2, text/html;q=0.3"})
    assert r.headers["Content-Type"] == CONTENT_TYPES["html"]
    r = client.get(path, headers={"Accept": "application/*;q=0.5, text/html;q=0"})
    assert r.headers["Content-Type"] == "application/json"


def test_format_parameter_wins_over_accept(client, catalog):
    r = client.get(f"/v1/stores/{catalog['id']}?format=xml", headers={"Accept": "text/html"})
    assert r.headers["Content-Type"] == CONTENT_TYPES["xml"]


@pytest.mark.parametrize(
    ("path_template", "query", "accept"),
    [
        ("/v1/stores/{id}", "", "image/png"),
        ("/v1/stores/{id}", "", "text/csv"),
        ("/v1/stores/{id}", "?format=csv", None),
        ("/v1/stores/{id}", "?format=yaml", "application/json"),
        ("/v1/stores", "", "text/csv, text/html;q=0"),
        ("/v1/stores/{id}/items", "", "application/pdf, text/html;level=2"),
        ("/healthz", "", "text/plain"),
        ("/v1/stores/{id}", "", "*/*;q=0"),
    ],
)
def test_nothing_acceptable_is_406_in_json_listing_what_is_available(
    client, catalog, path_template, query, accept
):
    headers = {"Accept": accept} if accept else {}
    r = client.get(path_template.format(id=catalog["id"]) + query, headers=headers)
    body = assert_problem(r, 406)
    assert "application/json" in body["detail"] or "json" in body["detail"]
    assert "xml" in body["detail"] and "html" in body["detail"]
    assert "Accept" in r.headers["Vary"]


def test_writes_negotiate_their_response(client, alice, catalog):
    r = client.post(
        "/v1/stores", json={"name": "Negotiated"}, headers={**alice.headers, "Accept": "text/html"}
    )
    assert r.status_code == 201 and r.headers["Content-Type"] == CONTENT_TYPES["html"]
    assert r.headers["Location"].startswith("/v1/stores/")
    r = client.patch(
        f"/v1/items/{catalog['item_id']}?format=xml", json={"quantity": 3}, headers=alice.headers
    )
    assert r.status_code == 200 and b"<quantity>3</quantity>" in r.data
    r = client.post(
        "/v1/auth/login",
        json={"username": alice.username, "password": alice.password},
        headers={"Accept": "application/xml"},
    )
    assert r.status_code == 200 and b"<token><access_token>" in r.data
    assert "Accept" in r.headers["Vary"]


def _writes(alice, catalog: dict, tag: str) -> list[tuple[str, str, dict | None, dict, int, str]]:
    """(method, path, JSON body, headers, status, XML root) for every write endpoint."""
    sid, iid = catalog["id"], catalog["item_id"]
    creds = {"username": alice.username, "password": alice.password}
    refresh = {"Authorization": f"Bearer {alice.refresh_token}"}
    auth = alice.headers
    return [
        ("POST", "/v1/auth/register", {"username": f"neg_{tag}", "password": "long enough pw"},
         {}, 201, "user"),
        ("POST", "/v1/auth/login", creds, {}, 200, "token"),
        ("POST", "/v1/auth/refresh", None, refresh, 200, "token"),
        ("POST", "/v1/stores", {"name": f"Write {tag}"}, auth, 201, "store"),
        ("PATCH", f"/v1/stores/{sid}", {"name": f"Patched {tag}"}, auth, 200, "store"),
        ("PUT", f"/v1/stores/{sid}", {"name": f"Put {tag}"}, auth, 200, "store"),
        ("POST", f"/v1/stores/{sid}/items", {"name": f"Scone {tag}", "price": 1}, auth, 201,
         "item"),
        ("PATCH", f"/v1/items/{iid}", {"quantity": 2}, auth, 200, "item"),
        ("PUT", f"/v1/items/{iid}", {"name": "Tea", "price": 3}, auth, 200, "item"),
    ]  # fmt: skip


@pytest.mark.parametrize("fmt", ["xml", "html"])
@pytest.mark.parametrize("how", ["accept", "query"])
def test_every_write_endpoint_answers_in_the_negotiated_format(client, alice, catalog, fmt, how):
    for method, path, body, headers, status, root in _writes(alice, catalog, f"{fmt}_{how}"):
        if how == "accept":
            headers = {**headers, "Accept": MEDIA_TYPES[fmt]}
        else:
            path = f"{path}?format={fmt}"
        r = client.open(path, method=method, json=body, headers=headers)
        assert r.status_code == status, (method, path, r.data[:300])
        assert r.headers["Content-Type"] == CONTENT_TYPES[fmt], (method, path)
        assert "Accept" in r.headers["Vary"]
        text = r.get_data(as_text=True)
        if fmt == "xml":
            assert f"<{root}>" in text, (method, path)
        else:
            assert text.startswith("<!doctype html>"), (method, path)


def test_every_write_endpoint_refuses_an_unacceptable_format_first(client, alice, catalog):
    for method, path, body, headers, _, _ in _writes(alice, catalog, "refused"):
        r = client.open(path, method=method, json=body, headers={**headers, "Accept": "image/png"})
        assert_problem(r, 406)
        assert "Accept" in r.headers["Vary"]
    assert client.get("/v1/users/neg_refused").status_code == 404
    assert client.get(f"/v1/items/{catalog['item_id']}").json["quantity"] == 0


def test_a_write_the_client_cannot_read_is_refused_before_it_happens(client, alice):
    r = client.post(
        "/v1/stores", json={"name": "Never made"}, headers={**alice.headers, "Accept": "image/png"}
    )
    assert_problem(r, 406)
    assert client.get("/v1/stores?q=Never+made").json["stores"] == []


def test_no_content_answers_carry_vary_and_no_body(client, alice, catalog):
    r = client.delete(
        f"/v1/items/{catalog['item_id']}", headers={**alice.headers, "Accept": "application/xml"}
    )
    assert r.status_code == 204 and r.data == b"" and "Accept" in r.headers["Vary"]


# --- errors -----------------------------------------------------------------------------


def test_errors_are_problem_xml_when_xml_is_negotiated(client):
    for headers, query in (
        ({"Accept": "application/xml"}, ""),
        ({"Accept": "application/problem+xml"}, ""),
        ({}, "?format=xml"),
    ):
        r = client.get(f"/v1/stores/999999{query}", headers=headers)
        assert r.status_code == 404
        assert r.headers["Content-Type"] == "application/problem+xml; charset=utf-8"
        assert b'<problem xmlns="urn:ietf:rfc:7807">' in r.data
        assert b"<status>404</status>" in r.data
        assert "Accept" in r.headers["Vary"]


def test_errors_stay_json_for_html_and_csv_clients(client):
    for query, accept in (("?format=html", None), ("", "text/html"), ("?format=csv", None)):
        r = client.get(f"/v1/stores/999999{query}", headers={"Accept": accept} if accept else {})
        assert_problem(r, 404)


def test_405_and_401_in_xml_keep_their_headers(client, catalog):
    r = client.post(f"/v1/items/{catalog['item_id']}?format=xml")
    assert r.status_code == 405 and "GET" in r.headers["Allow"]
    assert r.headers["Content-Type"].startswith("application/problem+xml")
    r = client.get("/v1/auth/me", headers={"Accept": "application/xml"})
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
    assert r.headers["Content-Type"].startswith("application/problem+xml")


def test_validation_problem_in_xml_lists_errors_as_i_elements(client, alice):
    r = client.post(
        "/v1/stores", json={"name": ""}, headers={**alice.headers, "Accept": "application/xml"}
    )
    assert r.status_code == 422
    assert b"<errors><i><field>name</field><message>" in r.data


# --- OpenAPI ------------------------------------------------------------------------------


def test_openapi_lists_media_types_produced_and_accepted(client):
    spec = client.get("/openapi.json").json
    items = spec["paths"]["/v1/stores/{store_id}/items"]
    produced = set(items["get"]["responses"]["200"]["content"])
    assert produced == {"application/json", "application/xml", "text/html", "text/csv"}
    accepted = set(items["post"]["requestBody"]["content"])
    assert accepted == {
        "application/json",
        "application/x-www-form-urlencoded",
        "multipart/form-data",
        "application/xml",
    }
    store = spec["paths"]["/v1/stores/{store_id}"]["get"]["responses"]["200"]["content"]
    assert set(store) == {"application/json", "application/xml", "text/html"}
    conflict = spec["paths"]["/v1/stores"]["post"]["responses"]["409"]["content"]
    assert set(conflict) == {"application/problem+json", "application/problem+xml"}
    shared = spec["components"]["responses"]["UNPROCESSABLE_ENTITY"]["content"]
    assert shared["application/problem+xml"]["schema"] == {"$ref": "#/components/schemas/Problem"}
