"""Hostile bodies: each is a quick 4xx problem, never a 500 or a crash, and the server
keeps answering, in process and behind a real gunicorn."""

from __future__ import annotations

import time

import pytest
import requests

from tests.problems import assert_problem

MB = 1024 * 1024
XXE = b"""<?xml version="1.0"?>
<!DOCTYPE item [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<item><name>&xxe;</name><price>1</price></item>"""
BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<item><name>&lol9;</name><price>1</price></item>"""
MULTIPART_BAD_UTF8 = (
    b'--XX\r\nContent-Disposition: form-data; name="name"\r\n\r\n\xff\xfe\r\n'
    b'--XX\r\nContent-Disposition: form-data; name="price"\r\n\r\n1\r\n--XX--\r\n'
)

# name -> (content type, body, expected status)
HOSTILE: dict[str, tuple[str, bytes, int]] = {
    "xxe": ("application/xml", XXE, 400),
    "billion laughs": ("application/xml", BILLION_LAUGHS, 400),
    "internal dtd": ("application/xml", b"<!DOCTYPE item><item><name>x</name></item>", 400),
    "external dtd": (
        "application/xml",
        b'<!DOCTYPE item SYSTEM "http://127.0.0.1:9/x.dtd"><item/>',
        400,
    ),
    "xml nested 100000": ("application/xml", b"<a>" * 100_000 + b"</a>" * 100_000, 400),
    "malformed xml": ("application/xml", b"<item><name>x</item>", 400),
    "json nested 100000": ("application/json", b"[" * 100_000 + b"]" * 100_000, 400),
    "json objects nested 100000": ("application/json", b'{"a":' * 100_000, 400),
    "json invalid utf-8": ("application/json", b'{"name": "\xc3\x28", "price": 1}', 400),
    "form invalid utf-8": ("application/x-www-form-urlencoded", b"name=\xff&price=1", 400),
    "form percent-encoded invalid utf-8": (
        "application/x-www-form-urlencoded",
        b"name=%C3%28&price=1",
        400,
    ),
    "multipart invalid utf-8": ("multipart/form-data; boundary=XX", MULTIPART_BAD_UTF8, 400),
    "xml invalid utf-8": ("application/xml", b"<item><name>\xff</name></item>", 400),
    "json truncated": ("application/json", b'{"name": "x', 400),
    "1 MB single line of JSON": (
        "application/json",
        b'{"name": "' + b"x" * (MB - 64) + b'", "price": 1}',
        422,
    ),
    "over MAX_CONTENT_LENGTH": ("application/json", b'["' + b"x" * MB + b'"]', 413),
    "1 MB single line of text": ("text/plain", b"x" * (MB - 1), 415),
    "no content type": ("", b"name=x", 415),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_bodies_are_quick_4xx_problems(client, alice, store, case):
    content_type, body, status = HOSTILE[case]
    headers = {**alice.headers, **({"Content-Type": content_type} if content_type else {})}
    started = time.monotonic()
    r = client.post(f"/v1/stores/{store['id']}/items", data=body, headers=headers)
    assert time.monotonic() - started < 5
    problem = assert_problem(r, status)
    assert "root:" not in problem["detail"] and "lollol" not in r.get_data(as_text=True)
    assert client.get(f"/v1/stores/{store['id']}").status_code == 200
    assert client.get(f"/v1/stores/{store['id']}/items").json["items"] == []


def test_deep_json_inside_a_field_is_a_422(client, alice, store):
    body = b'{"name": ' + b"[" * 1000 + b"]" * 1000 + b', "price": 1}'
    r = client.post(
        f"/v1/stores/{store['id']}/items",
        data=body,
        headers={**alice.headers, "Content-Type": "application/json"},
    )
    assert_problem(r, 422)


def test_a_real_server_survives_every_hostile_request(live_server):
    base = live_server(workers=1, RATELIMIT_ENABLED="false")
    http = requests.Session()
    creds = {"username": "hostile", "password": "long enough pw"}
    assert http.post(f"{base}/v1/auth/register", json=creds, timeout=5).status_code == 201
    token = http.post(f"{base}/v1/auth/login", json=creds, timeout=5).json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    store = http.post(f"{base}/v1/stores", json={"name": "Target"}, headers=auth, timeout=5)
    items = f"{base}/v1/stores/{store.json()['id']}/items"
    for case, (content_type, body, status) in HOSTILE.items():
        headers = {**auth, **({"Content-Type": content_type} if content_type else {})}
        # A connection per request: gunicorn drains at most 64 KiB of a body the app did
        # not read, then closes that keep-alive connection rather than read on.
        r = requests.post(items, data=body, headers=headers, timeout=5)
        assert r.status_code == status, (case, r.text[:300])
        assert r.headers["Content-Type"].startswith("application/problem+json"), case
        assert requests.get(f"{base}/healthz", timeout=5).status_code == 200, case
    # A 1 MB request line and a 1 MB header line: gunicorn refuses them before the app.
    r = requests.get(f"{base}/v1/stores?q={'x' * MB}", timeout=5)
    assert 400 <= r.status_code < 500
    r = requests.get(f"{base}/v1/stores", headers={"X-Long": "x" * MB}, timeout=5)
    assert 400 <= r.status_code < 500
    assert http.get(items, timeout=5).json()["items"] == []
