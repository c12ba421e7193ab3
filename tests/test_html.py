"""The browsable API: pages for every resource, forms that really write, nothing unescaped."""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
import requests

from tests.conftest import Account

HTML = {"Accept": "text/html"}
FORM_HEADERS = {"Content-Type": "application/x-www-form-urlencoded"}


class Page(HTMLParser):
    """The parts of a page a browser acts on: forms (with their inputs), links, assets."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.forms: list[dict] = []
        self.links: list[str] = []
        self.assets: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if tag == "form":
            self.forms.append({**a, "inputs": {}})
        elif tag == "input" and self.forms and a.get("name"):
            self.forms[-1]["inputs"][a["name"]] = a.get("value", "")
        elif tag == "a" and a.get("href"):
            self.links.append(a["href"])
        elif tag in ("script", "link"):
            self.assets.append(a.get("src") or a.get("href") or "")

    def form(self, method: str, action_suffix: str = "") -> dict:
        matches = [
            f
            for f in self.forms
            if f.get("data-method") == method and f["action"].endswith(action_suffix)
        ]
        assert len(matches) == 1, [(f.get("data-method"), f.get("action")) for f in self.forms]
        return matches[0]


def _page(client, path: str) -> tuple[str, Page]:
    r = client.get(path, headers=HTML)
    assert r.status_code == 200, r.data[:300]
    assert r.headers["Content-Type"] == "text/html; charset=utf-8"
    assert "script-src 'self'" in r.headers["Content-Security-Policy"]
    text = r.get_data(as_text=True)
    return text, Page(text)


def _submit(client, form: dict, account: Account, **values: str):
    """What app.js does: the form's fields (empty ones left out), form-encoded, with the token."""
    fields = {k: v for k, v in {**form["inputs"], **values}.items() if v != ""}
    return client.open(
        form["action"],
        method=form["data-method"],
        data=fields,
        headers={**account.headers, **FORM_HEADERS, "Accept": "application/json"},
    )


def test_the_store_page_shows_its_name_items_and_related_links(client, alice, store):
    for name in ("Green tea", "Black tea"):
        client.post(
            f"/v1/stores/{store['id']}/items",
            json={"name": name, "price": 3},
            headers=alice.headers,
        )
    text, page = _page(client, f"/v1/stores/{store['id']}")
    assert f"<h1>{store['name']}</h1>" in text
    assert "Green tea" in text and "Black tea" in text
    assert f"/v1/stores/{store['id']}/items" in page.links
    assert f"/v1/users/{alice.username}" in page.links
    assert any(link.startswith("/v1/items/") for link in page.links)
    assert "<pre>{\n  &#34;id&#34;: " in text  # the raw JSON beside it


def test_the_store_page_shows_an_item_added_after_it_was_read(client, alice, store):
    before, _ = _page(client, f"/v1/stores/{store['id']}")
    assert "Fresh scone" not in before
    client.post(
        f"/v1/stores/{store['id']}/items",
        json={"name": "Fresh scone", "price": 2},
        headers=alice.headers,
    )
    after, _ = _page(client, f"/v1/stores/{store['id']}")
    assert "Fresh scone" in after


def test_every_resource_has_a_page(client, alice, store):
    r = client.post(
        f"/v1/stores/{store['id']}/items", json={"name": "Tea", "price": 3}, headers=alice.headers
    )
    for path in (
        "/",
        "/v1/stores",
        f"/v1/stores/{store['id']}/items",
        f"/v1/items/{r.json['id']}",
        f"/v1/users/{alice.username}",
        "/healthz",
    ):
        text, _ = _page(client, path)
        assert text.startswith("<!doctype html>") and '<aside class="raw">' in text
    r = client.get("/v1/auth/me?format=html", headers=alice.headers)
    assert r.status_code == 200 and alice.username in r.get_data(as_text=True)


def test_user_supplied_markup_appears_escaped(client, alice):
    name = "<script>alert('x')</script>"
    r = client.post("/v1/stores", json={"name": name}, headers=alice.headers)
    sid = r.json["id"]
    client.post(
        f"/v1/stores/{sid}/items",
        json={"name": '"><img src=x onerror=alert(1)>', "price": 1, "description": name},
        headers=alice.headers,
    )
    item_id = client.get(f"/v1/stores/{sid}/items").json["items"][0]["id"]
    for path in (
        "/v1/stores",
        f"/v1/stores/{sid}",
        f"/v1/stores/{sid}/items",
        f"/v1/items/{item_id}",
    ):
        text, _ = _page(client, path)
        assert "<script>alert" not in text and "<img src=x" not in text, path
        assert "&lt;script&gt;" in text or "&lt;img src=x" in text, path


def test_the_stores_list_is_a_table_with_pagination_links(client, alice):
    for n in range(3):
        client.post("/v1/stores", json={"name": f"Paged {n}"}, headers=alice.headers)
    text, page = _page(client, "/v1/stores?limit=2&q=Paged")
    assert text.count("<tr>") == 3  # header and two rows
    next_links = [link for link in page.links if "cursor=" in link]
    assert len(next_links) == 1
    text2, _ = _page(client, next_links[0])
    assert "Paged 2" in text2 and "Paged 0" not in text2


def test_format_html_is_kept_by_the_pages_links(client, store):
    r = client.get(f"/v1/stores/{store['id']}?format=html")
    page = Page(r.get_data(as_text=True))
    assert f"/v1/stores/{store['id']}/items?format=html" in page.links


def test_forms_create_a_store_and_an_item_for_real(client, alice):
    _, stores_page = _page(client, "/v1/stores")
    r = _submit(client, stores_page.form("POST", "/v1/stores"), alice, name="Made by a form")
    assert r.status_code == 201, r.json
    store_path = r.headers["Location"]

    _, store_page = _page(client, store_path)
    add = store_page.form("POST", "/items")
    r = _submit(client, add, alice, name="Form tea", price="4.20", quantity="5", sku="")
    assert r.status_code == 201, r.json
    assert r.json["price"] == 4.2 and r.json["quantity"] == 5 and r.json["sku"] is None
    text, _ = _page(client, store_path)
    assert "Form tea" in text


def test_forms_edit_and_delete_for_real(client, alice, store):
    r = client.post(
        f"/v1/stores/{store['id']}/items", json={"name": "Old", "price": 1}, headers=alice.headers
    )
    item_path = f"/v1/items/{r.json['id']}"
    _, page = _page(client, item_path)
    edit = page.form("PATCH", item_path)
    assert edit["inputs"]["name"] == "Old" and edit["inputs"]["price"] == "1.00"
    r = _submit(client, edit, alice, name="New", description="Edited in the page")
    assert r.status_code == 200, r.json
    text, _ = _page(client, item_path)
    assert "<h1>New</h1>" in text and "Edited in the page" in text

    _, store_page = _page(client, f"/v1/stores/{store['id']}")
    rename = store_page.form("PATCH", f"/v1/stores/{store['id']}")
    assert _submit(client, rename, alice, name="Renamed shop").json["name"] == "Renamed shop"

    assert _submit(client, page.form("DELETE", item_path), alice).status_code == 204
    assert client.get(item_path).status_code == 404


def test_form_writes_need_the_owner(client, bob, store):
    _, page = _page(client, f"/v1/stores/{store['id']}")
    r = _submit(client, page.form("PATCH", f"/v1/stores/{store['id']}"), bob, name="Stolen")
    assert r.status_code == 403


def test_the_login_form_points_at_the_real_endpoints(client):
    _, page = _page(client, "/v1/stores")
    login = next(f for f in page.forms if f.get("id") == "login-form")
    assert set(login["inputs"]) == {"username", "password"}
    assert login["data-login"] == "/v1/auth/login"
    assert login["data-register"] == "/v1/auth/register"


def test_assets_are_served_by_the_app(client):
    _, page = _page(client, "/v1/stores")
    assert page.assets and all(a.startswith("/static/") for a in page.assets)
    for asset in page.assets:
        r = client.get(asset)
        assert r.status_code == 200 and r.data
    assert b"sessionStorage" in client.get("/static/app.js").data


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node to parse JavaScript")
def test_the_page_script_is_valid_javascript():
    script = Path(__file__).resolve().parent.parent / "app" / "static" / "app.js"
    result = subprocess.run(["node", "--check", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_the_reference_uses_the_base_layout(client):
    r = client.get("/docs")
    text = r.get_data(as_text=True)
    assert r.status_code == 200 and 'id="login-form"' in text and "/static/app.css" in text
    assert "<code>text/csv</code>" in text


def test_pages_and_form_writes_through_a_real_server(live_server):
    base = live_server(workers=1, RATELIMIT_ENABLED="false")
    http = requests.Session()
    creds = {"username": "pagesuser", "password": "long enough pw"}
    assert http.post(f"{base}/v1/auth/register", data=creds, timeout=5).status_code == 201
    token = http.post(f"{base}/v1/auth/login", data=creds, timeout=5).json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    r = http.post(f"{base}/v1/stores", data={"name": "<b>Live</b>"}, headers=auth, timeout=5)
    assert r.status_code == 201
    page = http.get(base + r.headers["Location"], headers=HTML, timeout=5)
    assert page.status_code == 200 and "&lt;b&gt;Live&lt;/b&gt;" in page.text
    assert "<b>Live</b>" not in page.text
