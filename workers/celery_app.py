"""The worker's entry point: ``celery -A workers.celery_app worker``.

The only module that builds a Flask app at import time.
"""

from app import create_app

flask_app = create_app()
celery_app = flask_app.extensions["celery"]
