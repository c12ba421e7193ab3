"""Public user profiles."""

from __future__ import annotations

from tests.conftest import unique_name
from tests.problems import assert_problem


def test_profile_counts_the_users_stores(client, alice, bob):
    assert client.get(f"/v1/users/{alice.username}").json == {
        "username": alice.username,
        "store_count": 0,
    }
    for _ in range(2):
        client.post("/v1/stores", json={"name": unique_name("S")}, headers=alice.headers)
    client.post("/v1/stores", json={"name": unique_name("S")}, headers=bob.headers)
    response = client.get(f"/v1/users/{alice.username}")
    assert response.status_code == 200
    assert response.json == {"username": alice.username, "store_count": 2}


def test_profile_is_public_and_reveals_nothing_private(client, alice):
    body = client.get(f"/v1/users/{alice.username}").json
    assert set(body) == {"username", "store_count"}


def test_unknown_user_is_404(client):
    assert_problem(client.get("/v1/users/nobody-here"), 404)
