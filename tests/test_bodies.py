"""Request bodies through a real gunicorn: a body sent chunked (no ``Content-Length``) is
held to the same limits as one that says its length; over the limit is a ``413``, never
a body cut at the limit and processed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from tests.problems import assert_problem
from tests.test_caching import _api

LIMIT = 1000


def chunked(body: bytes, size: int = 100) -> Iterator[bytes]:
    """``body`` as requests sends a generator: ``Transfer-Encoding: chunked``."""
    for start in range(0, len(body), size):
        yield body[start : start + size]


@pytest.fixture
def server(live_server) -> str:
    return live_server(MAX_CONTENT_LENGTH=str(LIMIT), MAX_IMPORT_BYTES=str(LIMIT))


def post(url: str, body: bytes, content_type: str, auth: dict[str, str]) -> requests.Response:
    headers = {**auth, "Content-Type": content_type}
    response = requests.post(url, data=chunked(body), headers=headers, timeout=10)
    assert "chunked" in response.request.headers.get("Transfer-Encoding", "")
    assert "Content-Length" not in response.request.headers
    return response


def test_a_chunked_body_over_the_limit_is_413_not_cut(server):
    auth, sid, _iid = _api(server)
    items = f"{server}/v1/stores/{sid}/items"
    # Empty fields are skipped: cut at the limit, this is a valid form without quantity.
    form = b"name=Cut&price=1.00" + b"&" * LIMIT + b"quantity=5"
    assert_problem(post(items, form, "application/x-www-form-urlencoded", auth), 413)
    json_body = b'{"name": "Cut", "price": 1, "description": "' + b"x" * LIMIT + b'"}'
    assert_problem(post(items, json_body, "application/json", auth), 413)
    names = [i["name"] for i in requests.get(items, timeout=10).json()["items"]]
    assert names == ["Tea"]  # nothing was created from a cut body


def test_a_chunked_body_up_to_the_limit_is_read_whole(server):
    auth, sid, _iid = _api(server)
    items = f"{server}/v1/stores/{sid}/items"
    head = b'{"name": "Whole", "price": 1, "quantity": 5, "description": "'
    body = head + b"x" * (LIMIT - len(head) - 2) + b'"}'
    assert len(body) == LIMIT
    response = post(items, body, "application/json", auth)
    assert response.status_code == 201, response.text
    assert response.json()["quantity"] == 5


@pytest.mark.parametrize("size", [LIMIT + 1, 50 * LIMIT])
def test_a_chunked_import_over_its_limit_is_413(server, size):
    auth, sid, _iid = _api(server)
    imports = f"{server}/v1/stores/{sid}/imports"
    csv = b"name,price\n" + b"".join(b"n%06d,1\n" % i for i in range(size // 10 + 1))
    csv = csv[:size]
    assert_problem(post(imports, csv, "text/csv", auth), 413)
    part = b'--XX\r\nContent-Disposition: form-data; name="file"; filename="a.csv"\r\n\r\n'
    multipart = part + csv + b"\r\n--XX--\r\n"
    assert_problem(post(imports, multipart, "multipart/form-data; boundary=XX", auth), 413)
    jobs = requests.get(f"{server}/v1/jobs", headers=auth, timeout=10).json()["jobs"]
    assert jobs == []


def test_a_chunked_import_of_exactly_its_limit_is_accepted(server):
    auth, sid, _iid = _api(server)
    csv = b"name,price\n" + b"".join(b"n%06d,1\n" % i for i in range(LIMIT // 10))
    csv = csv[: LIMIT - 5] + b"\nx,1\n"
    assert len(csv) == LIMIT
    response = post(f"{server}/v1/stores/{sid}/imports", csv, "text/csv", auth)
    assert response.status_code == 202, response.text
