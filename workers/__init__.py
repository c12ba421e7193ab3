"""Celery bound to the Flask app: every task runs inside an application context."""

from __future__ import annotations

from celery import Celery, Task
from flask import Flask

import celery_config


def celery_init_app(app: Flask) -> Celery:
    """Build the Celery app for ``app`` (Flask's own ``examples/celery`` pattern)."""

    class FlaskTask(Task):
        def __call__(self, *args: object, **kwargs: object) -> object:
            with app.app_context():
                return self.run(*args, **kwargs)

    celery = Celery(app.name, task_cls=FlaskTask)
    celery.config_from_object(celery_config)
    settings = app.config["SETTINGS"]
    celery.conf.broker_url = settings.broker_url
    celery.conf.broker_use_ssl = celery_config.broker_ssl_options(settings.broker_url)
    celery.set_default()
    app.extensions["celery"] = celery
    return celery
