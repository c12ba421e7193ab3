"""The Procfile's web and worker processes start for real and answer."""

import requests

from tests.services import ping_workers


def test_gunicorn_serves_readyz_with_a_live_worker(live_server, celery_worker, app):
    celery_worker()
    base = live_server(workers=2)
    response = requests.get(base + "/readyz", timeout=5)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "status": "ok",
        "checks": {"database": "ok", "redis": "ok", "broker": "ok"},
    }
    replies = ping_workers(app.extensions["celery"], timeout=1)
    assert replies and all(next(iter(r.values())) == {"ok": "pong"} for r in replies)
