"""The XML mapping: resources out, single resources in, and the round trip between them."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from app import negotiation
from app.representations import xmlmap

XML = {"Accept": "application/xml"}


def _xml(response) -> ET.Element:
    assert response.headers["Content-Type"].startswith(
        ("application/xml", "application/problem+xml")
    ), response.data[:300]
    assert response.data.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    return ET.fromstring(response.data)


def _item(client, alice, store, **fields) -> dict:
    body = {"name": "Tea", "price": "2.50", **fields}
    r = client.post(f"/v1/stores/{store['id']}/items", json=body, headers=alice.headers)
    assert r.status_code == 201, r.json
    return r.json


def test_a_store_is_a_store_element_with_its_fields_in_order(client, store):
    root = _xml(client.get(f"/v1/stores/{store['id']}", headers=XML))
    assert root.tag == "store"
    assert [c.tag for c in root] == [
        "id",
        "name",
        "owner",
        "item_count",
        "created_at",
        "updated_at",
    ]
    assert root.findtext("name") == store["name"] and root.findtext("id") == str(store["id"])


def test_null_is_an_empty_element_with_nil_true(client, alice, store):
    item = _item(client, alice, store)
    root = _xml(client.get(f"/v1/items/{item['id']}?format=xml"))
    sku = root.find("sku")
    assert sku is not None and sku.get("nil") == "true" and sku.text is None and len(sku) == 0
    assert root.findtext("price") == "2.50"


def test_a_list_holds_repeated_elements_and_next(client, alice, store):
    for name in ("A", "B", "C"):
        _item(client, alice, store, name=name)
    root = _xml(client.get(f"/v1/stores/{store['id']}/items?limit=2", headers=XML))
    assert root.tag == "items"
    assert [c.tag for c in root] == ["item", "item", "next"]
    assert [i.findtext("name") for i in root.findall("item")] == ["A", "B"]
    next_url = root.findtext("next")
    assert next_url and "cursor=" in next_url
    page2 = _xml(client.get(next_url, headers=XML))
    assert [i.findtext("name") for i in page2.findall("item")] == ["C"]
    assert page2.find("next").get("nil") == "true"

    stores = _xml(client.get("/v1/stores?format=xml"))
    assert stores.tag == "stores" and stores.find("store").findtext("id") == str(store["id"])


def test_user_supplied_markup_is_text_in_xml(client, alice):
    r = client.post("/v1/stores", json={"name": "<b>&amp; 'q'</b>"}, headers=alice.headers)
    root = _xml(client.get(f"/v1/stores/{r.json['id']}", headers=XML))
    assert root.findtext("name") == "<b>&amp; 'q'</b>" and root.find("name/b") is None


def test_control_characters_xml_cannot_carry_become_replacement_characters(client, alice):
    r = client.post("/v1/stores", json={"name": "Bell\u0007 shop"}, headers=alice.headers)
    assert r.status_code == 201
    root = _xml(client.get(f"/v1/stores/{r.json['id']}", headers=XML))
    assert root.findtext("name") == "Bell\ufffd shop"


def test_the_mapping_is_generic_for_other_resources(app):
    """Resources other modules render (jobs, job errors) need only their name."""
    job = {
        "id": "j1",
        "status": "running",
        "dry_run": False,
        "progress": {"total": None, "processed": 10},
        "error": {"title": "Bad file", "errors": [{"field": "price", "message": "m"}]},
    }
    with app.test_request_context("/", headers=XML):
        root = ET.fromstring(negotiation.render(job, resource="job").data)
        jobs = ET.fromstring(
            negotiation.render({"jobs": [job], "next": None}, resource="jobs").data
        )
        errors = {"errors": [{"row": 2, "field": "price", "message": "bad", "value": "-1"}]}
        errs = ET.fromstring(negotiation.render(errors, resource="errors").data)
    assert root.tag == "job" and root.findtext("dry_run") == "false"
    assert root.find("progress/total").get("nil") == "true"
    assert root.findtext("progress/processed") == "10"
    assert root.findtext("error/errors/error/field") == "price"
    assert [c.tag for c in jobs] == ["job", "next"]
    assert errs.find("error").findtext("row") == "2"


def test_keys_that_are_not_xml_names_are_field_elements():
    root = ET.fromstring(xmlmap.dumps({"checks": {"a b": "ok", "1x": "down"}}, "health"))
    fields = root.findall("checks/field")
    assert [(f.get("name"), f.text) for f in fields] == [("a b", "ok"), ("1x", "down")]
    assert xmlmap.loads(xmlmap.dumps({"a b": "1", "n": None}, "x")) == {"a b": "1", "n": None}


def test_problem_xml_follows_rfc_9457(client, alice):
    r = client.post(
        "/v1/stores",
        data=b"<store><name></name></store>",
        headers={**alice.headers, "Content-Type": "application/xml", "Accept": "application/xml"},
    )
    assert r.status_code == 422
    root = _xml(r)
    ns = "{urn:ietf:rfc:7807}"
    assert root.tag == f"{ns}problem"
    assert root.findtext(f"{ns}status") == "422"
    assert root.findtext(f"{ns}errors/{ns}i/{ns}field") == "name"


# --- XML in ----------------------------------------------------------------------------


def test_create_a_store_and_an_item_from_xml(client, alice):
    headers = {**alice.headers, "Content-Type": "application/xml"}
    r = client.post("/v1/stores", data="<store><name>XML Shop</name></store>", headers=headers)
    assert r.status_code == 201, r.json
    sid = r.json["id"]
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<item><name>Café</name><price>3.10</price>'
        '<quantity>4</quantity><sku nil="true"/><description>Très bon</description></item>'
    )
    r = client.post(f"/v1/stores/{sid}/items", data=body.encode(), headers=headers)
    assert r.status_code == 201, r.json
    assert r.json["name"] == "Café" and r.json["price"] == 3.1 and r.json["quantity"] == 4
    assert r.json["sku"] is None and r.json["description"] == "Très bon"


@pytest.mark.parametrize("content_type", ["application/xml", "text/xml"])
def test_xml_validation_errors_are_422(client, alice, store, content_type):
    r = client.post(
        f"/v1/stores/{store['id']}/items",
        data="<item><name>x</name><price>abc</price><colour>red</colour></item>",
        headers={**alice.headers, "Content-Type": content_type},
    )
    assert r.status_code == 422
    assert {e["field"] for e in r.json["errors"]} == {"price", "colour"}


def test_round_trip_a_store_get_as_xml_then_put_back(client, alice, store):
    path = f"/v1/stores/{store['id']}"
    original = client.get(path, headers=XML).data
    changed = original.replace(
        f"<name>{store['name']}</name>".encode(), b"<name>Renamed by XML</name>"
    )
    assert changed != original
    headers = {**alice.headers, "Content-Type": "application/xml", **XML}
    r = client.put(path, data=changed, headers=headers)
    assert r.status_code == 200, r.data
    assert _xml(r).findtext("name") == "Renamed by XML"
    # and unchanged: what a GET returns can be PUT back as it is
    again = client.get(path, headers=XML).data
    assert client.put(path, data=again, headers=headers).status_code == 200


def test_round_trip_an_item_get_as_xml_then_post_and_put(client, alice, store):
    item = _item(client, alice, store, quantity=7, description="Loose leaf")
    got = client.get(f"/v1/items/{item['id']}", headers=XML).data
    headers = {**alice.headers, "Content-Type": "application/xml"}
    r = client.put(f"/v1/items/{item['id']}", data=got, headers=headers)
    assert r.status_code == 200, r.json
    assert {k: r.json[k] for k in ("name", "price", "quantity", "sku", "description")} == {
        k: item[k] for k in ("name", "price", "quantity", "sku", "description")
    }
    copy = got.replace(b"<name>Tea</name>", b"<name>Tea copy</name>")
    r = client.post(f"/v1/stores/{store['id']}/items", data=copy, headers=headers)
    assert r.status_code == 201, r.json
    assert r.json["name"] == "Tea copy" and r.json["quantity"] == 7 and r.json["sku"] is None


def test_login_and_register_take_xml(client):
    body = "<user><username>xmluser</username><password>long enough pw</password></user>"
    headers = {"Content-Type": "application/xml", **XML}
    r = client.post("/v1/auth/register", data=body, headers=headers)
    assert r.status_code == 201 and _xml(r).findtext("username") == "xmluser"
    r = client.post("/v1/auth/login", data=body, headers=headers)
    assert r.status_code == 200 and _xml(r).findtext("token_type") == "Bearer"
