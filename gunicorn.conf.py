"""gunicorn settings, after Heroku's own template for Python apps."""

import os

# Heroku sets PORT; BIND_HOST lets local runs listen on loopback only.
bind = [f"{os.environ.get('BIND_HOST', '[::]')}:{os.environ.get('PORT', '5000')}"]
workers = int(os.environ.get("WEB_CONCURRENCY", 2))
worker_class = "gthread"
threads = int(os.environ.get("PYTHON_MAX_THREADS", 5))
# Heroku's router gives up after 30 s and sends SIGKILL 30 s after SIGTERM: finish
# in-flight requests well inside both.
timeout = 25
graceful_timeout = 20
# Longer than the router's 90 s idle keep-alive, so the router closes first.
keepalive = 95
accesslog = "-"
errorlog = "-"
forwarded_allow_ips = "*" if int(os.environ.get("TRUSTED_PROXY_HOPS", "0") or 0) > 0 else ""
