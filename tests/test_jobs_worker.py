"""Imports end to end through the Procfile's processes: gunicorn and a real Celery worker."""

from __future__ import annotations

import requests

from tests.importing import assert_finished_invariant, assert_job_shape
from tests.services import wait_until
from tests.test_jobs import parse_events


def big_csv(rows: int, start: int = 0) -> bytes:
    lines = ["name,price,quantity"] + [
        f"Item {i:06d},{i % 97}.5,{i % 7}" for i in range(start, rows)
    ]
    return ("\n".join(lines) + "\n").encode()


def poll(base: str, account, job_id: str, *, timeout: float = 120) -> dict:
    def finished():
        job = requests.get(f"{base}/v1/jobs/{job_id}", headers=account.headers, timeout=5).json()
        return job if job["status"] in ("succeeded", "failed", "cancelled") else None

    return wait_until(finished, timeout=timeout, interval=0.2, what=f"job {job_id}")


def test_upload_to_gunicorn_is_processed_by_the_worker(live_server, celery_worker, alice, store):
    celery_worker()
    base = live_server()
    items_url = f"{base}/v1/stores/{store['id']}/items"
    assert requests.get(items_url, timeout=5).json()["items"] == []  # cached, empty
    response = requests.post(
        f"{base}/v1/stores/{store['id']}/imports",
        data=big_csv(3000),
        headers={**alice.headers, "Content-Type": "text/csv"},
        timeout=30,
    )
    assert response.status_code == 202, response.text
    assert response.headers["Location"] == f"/v1/jobs/{response.json()['id']}"
    job = poll(base, alice, response.json()["id"])
    assert_job_shape(job)
    assert_finished_invariant(job)
    assert job["status"] == "succeeded" and job["progress"]["created"] == 3000
    # The import announced the change: the very next read sees it.
    page = requests.get(items_url + "?limit=500", timeout=5).json()
    assert len(page["items"]) == 500 and page["next"]
    assert requests.get(f"{base}/v1/stores/{store['id']}", timeout=5).json()["item_count"] == 3000


def test_multipart_upload_through_gunicorn(live_server, celery_worker, alice, store):
    celery_worker()
    base = live_server()
    response = requests.post(
        f"{base}/v1/stores/{store['id']}/imports?mode=create",
        files={"file": ("items.ndjson", b'{"name": "A", "price": 1}\n{"name": "B", "price": 2}\n')},
        headers=alice.headers,
        timeout=30,
    )
    assert response.status_code == 202, response.text
    job = poll(base, alice, response.json()["id"])
    assert job["status"] == "succeeded" and job["mode"] == "create"
    assert job["progress"]["created"] == 2


def test_cancel_while_running_stops_at_a_chunk_boundary(live_server, celery_worker, alice, store):
    celery_worker(IMPORT_CHUNK_ROWS="200")
    base = live_server()
    total = 60000
    response = requests.post(
        f"{base}/v1/stores/{store['id']}/imports",
        data=big_csv(total),
        headers={**alice.headers, "Content-Type": "text/csv"},
        timeout=30,
    )
    job_id = response.json()["id"]

    def running():
        job = requests.get(f"{base}/v1/jobs/{job_id}", headers=alice.headers, timeout=5).json()
        return job["status"] == "running" and job["progress"]["processed"] > 0

    wait_until(running, timeout=60, interval=0.05, what="the import to start")
    cancel = requests.post(f"{base}/v1/jobs/{job_id}/cancel", headers=alice.headers, timeout=5)
    assert cancel.status_code in (202, 409), cancel.text
    job = poll(base, alice, job_id)
    if cancel.status_code == 409:  # it had finished already: nothing to check
        return
    assert job["status"] == "cancelled"
    assert_finished_invariant(job)
    done = job["progress"]["processed"]
    assert 0 < done < total and done % 200 == 0  # whole chunks only
    count = requests.get(f"{base}/v1/stores/{store['id']}", timeout=5).json()["item_count"]
    assert count == job["progress"]["created"] == done


def test_event_stream_reports_progress_then_done_and_ends(live_server, celery_worker, alice, store):
    celery_worker(IMPORT_CHUNK_ROWS="500")
    base = live_server(JOB_EVENTS_SECONDS="60")
    response = requests.post(
        f"{base}/v1/stores/{store['id']}/imports",
        data=big_csv(20000),
        headers={**alice.headers, "Content-Type": "text/csv"},
        timeout=30,
    )
    job_id = response.json()["id"]
    with requests.get(
        f"{base}/v1/jobs/{job_id}/events", headers=alice.headers, stream=True, timeout=60
    ) as stream:
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        text = "".join(chunk for chunk in stream.iter_content(decode_unicode=True))
    events = parse_events(text)
    names = [e["event"] for e in events]
    assert names[-1] == "done" and names.count("done") == 1
    assert set(names[:-1]) <= {"progress"}
    ids = [e["id"] for e in events]
    assert len(ids) == len(set(ids))  # an event only when the figures changed
    assert '"status":"succeeded"' in events[-1]["data"]
