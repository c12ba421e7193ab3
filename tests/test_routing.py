"""Path ids: ASCII digits for stores and items, job ids of their own characters; anything
else is a 404 problem before any lookup, on every database and on the fast paths."""

from __future__ import annotations

from urllib.parse import quote

import pytest
import requests

from tests.importing import post_import
from tests.problems import assert_problem
from tests.test_caching import _api

# The zero of decimal digits other scripts write (Python's \\d and int() read them all):
# fullwidth, Arabic-Indic, Devanagari.
ZEROS = [0xFF10, 0x0660, 0x0966]
NOT_JOB_IDS = ["%00", "a%00b", "%C3%A9t%C3%A9", "a%20b", "x" * 37]


def spelled(number: int, zero: int) -> str:
    """``number`` in the digits starting at code point ``zero``, percent-encoded."""
    return quote("".join(chr(zero + int(d)) for d in str(number)))


@pytest.mark.parametrize("zero", ZEROS)
def test_ids_in_other_digits_are_404(client, alice, store, zero):
    items = f"/v1/stores/{store['id']}/items"
    item = client.post(items, json={"name": "Tea", "price": 1}, headers=alice.headers).json
    sid = spelled(store["id"], zero)
    iid = spelled(item["id"], zero)
    for path in (f"/v1/stores/{sid}", f"/v1/stores/{sid}/items", f"/v1/items/{iid}"):
        assert_problem(client.get(path), 404, case=path)
    response = client.patch(f"/v1/stores/{sid}", json={"name": "X"}, headers=alice.headers)
    assert_problem(response, 404)
    assert_problem(client.delete(f"/v1/items/{iid}", headers=alice.headers), 404)
    assert_problem(post_import(client, alice, sid, "name,price\nx,1\n"), 404)  # type: ignore[arg-type]
    assert client.get(f"/v1/stores/{store['id']}").json["name"] == store["name"]
    assert client.get(items).json["items"] == [item]


def test_ascii_ids_still_route(client, store):
    assert client.get(f"/v1/stores/{store['id']}").status_code == 200
    assert client.get(f"/v1/stores/0{store['id']}").status_code == 200  # leading zero: digits


@pytest.mark.parametrize("job_id", NOT_JOB_IDS)
def test_job_ids_the_database_cannot_compare_are_404(client, alice, job_id):
    for path in ("", "/errors", "/events"):
        assert_problem(client.get(f"/v1/jobs/{job_id}{path}", headers=alice.headers), 404)
    assert_problem(client.post(f"/v1/jobs/{job_id}/cancel", headers=alice.headers), 404)


def test_odd_ids_on_the_fast_paths_are_404(live_server):
    """With rate limits on, cached reads and job polls are answered before Flask."""
    base = live_server(workers=1, RATELIMIT_ENABLED="true", RATELIMIT_DEFAULT="1000 per minute")
    auth, sid, iid = _api(base)
    for _ in range(2):  # the second read is a cache hit
        assert requests.get(f"{base}/v1/stores/{sid}", timeout=10).status_code == 200
        assert requests.get(f"{base}/v1/items/{iid}", timeout=10).status_code == 200
    for zero in ZEROS:
        for url in (
            f"{base}/v1/stores/{spelled(sid, zero)}",
            f"{base}/v1/items/{spelled(iid, zero)}",
        ):
            assert_problem(requests.get(url, timeout=10), 404, case=url)
    for job_id in NOT_JOB_IDS:
        for path in ("", "/errors", "/events"):
            url = f"{base}/v1/jobs/{job_id}{path}"
            assert_problem(requests.get(url, headers=auth, timeout=10), 404, case=url)
        url = f"{base}/v1/jobs/{job_id}/cancel"
        assert_problem(requests.post(url, headers=auth, timeout=10), 404, case=url)
