"""gunicorn settings, after Heroku's own template for Python apps, on gevent.

The gevent worker class serves each connection on a greenlet: event streams, long polls
and slow uploads wait without holding one of a handful of threads, so hundreds of them
leave every other endpoint answering (docs/decisions.md has the measurements and the
traps this choice brings, and how the app handles each).
"""

import gc
import os
import time

# Heroku sets PORT; BIND_HOST lets local runs listen on loopback only.
bind = [f"{os.environ.get('BIND_HOST', '[::]')}:{os.environ.get('PORT', '5000')}"]
workers = int(os.environ.get("WEB_CONCURRENCY", 2))
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "gevent")
# Open connections per worker process (followers, uploads and ordinary requests alike).
worker_connections = int(os.environ.get("WORKER_CONNECTIONS", 1000))
# Used by the gthread class only (GUNICORN_WORKER_CLASS=gthread).
threads = int(os.environ.get("PYTHON_MAX_THREADS", 5))
# Heroku's router gives up after 30 s and sends SIGKILL 30 s after SIGTERM: finish
# in-flight requests well inside both.
timeout = 25
graceful_timeout = 20
# Longer than the router's 90 s idle keep-alive, so the router closes first.
keepalive = 95
# Request heads: Heroku's router passes request lines and header lines of up to 8192 bytes
# (devcenter.heroku.com/articles/http-routing, "HTTP Validation and Restrictions"), so
# gunicorn takes at least as much. Past its own limits gunicorn answers with a text/html
# page before the app; short of them the app answers a head over Heroku's limits with a
# problem document (app/heads.py, docs/decisions.md).
limit_request_line = 8190  # gunicorn's longest short of "no limit"
limit_request_field_size = 2 * 8192 + 2  # two of Heroku's header lines, CRLF included
# Heroku passes 1000 fields, but gunicorn's parser is quadratic in the head's size (fields
# times field size): an 8 MB head took 12 s of CPU, blocking the worker; 100 fields of
# 16 KiB, 0.37 s. So gunicorn's default count stays.
limit_request_fields = 100
accesslog = "-"
errorlog = "-"
forwarded_allow_ips = "*" if int(os.environ.get("TRUSTED_PROXY_HOPS", "0") or 0) > 0 else ""


def post_worker_init(worker):  # gunicorn hook, in each worker once the app is loaded
    """Let long polls and event streams end early when this worker is told to stop; keep
    the loaded app out of the garbage collector's full passes."""
    from app import lifecycle

    lifecycle.watch(lambda: worker.alive)
    # Everything loaded so far lives as long as the process: a full collection need not
    # walk it again and again (each pass stalls every connection of a gevent worker).
    gc.freeze()


def post_request(worker, req, environ, resp):  # gunicorn hook, after every request
    """Let the other connections' requests run before this connection's next one.

    A gevent greenlet yields only when it would block; on a busy keep-alive connection
    the next request is often already in the socket buffer, so without this a few
    connections are served back to back while the others wait (a closed-loop benchmark
    showed p50 0.4 ms but p99 1.5 s on one worker). ``time.sleep(0)`` is gevent's yield
    once patched, and nearly free under threads.
    """
    time.sleep(0)
