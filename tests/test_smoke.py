def test_register_login_create_store_and_item(client, alice):
    r = client.post("/v1/stores", json={"name": "Corner Shop"}, headers=alice.headers)
    assert r.status_code == 201, r.json
    assert r.headers["Location"] == f"/v1/stores/{r.json['id']}"
    sid = r.json["id"]
    r = client.post(
        f"/v1/stores/{sid}/items", json={"name": "Tea", "price": "2.50"}, headers=alice.headers
    )
    assert r.status_code == 201, r.json
    assert r.json["price"] == 2.5
    r = client.get(f"/v1/stores/{sid}")
    assert r.json["item_count"] == 1 and r.json["owner"] == alice.username
    r = client.get(f"/v1/stores/{sid}/items")
    assert [i["name"] for i in r.json["items"]] == ["Tea"]
