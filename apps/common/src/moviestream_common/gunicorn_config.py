"""gunicorn settings for the HTTP services: `gunicorn -c python:moviestream_common.gunicorn_config APP`.

Worker count comes from WEB_CONCURRENCY (gunicorn reads it itself).
inventory-app uses the threaded worker set here (gunicorn's gthread with a
deadline of REQUEST_READ_TIMEOUT seconds, default 10, for reading each
request), with GUNICORN_THREADS threads; api-gateway replaces it on its command line with aiohttp's
uvloop worker. Access lines are written by the applications as JSON, so
gunicorn's own access log stays off.
"""

from moviestream_common import metrics
from moviestream_common.config import env_int

bind = f"0.0.0.0:{env_int('PORT', 8080, minimum=1, maximum=65535)}"
worker_class = "moviestream_common.gunicorn_worker.DeadlineThreadWorker"
threads = env_int("GUNICORN_THREADS", 8, minimum=1, maximum=256)
keepalive = 75
timeout = 30
graceful_timeout = 20
accesslog = None
logger_class = "moviestream_common.gunicorn_worker.NoAccessLogger"
errorlog = "-"
# gunicorn's control socket lives under HOME, which the pods cannot write
# to; nothing here uses it.
control_socket_disable = True
# Only the application's JSON lines reach stdout; gunicorn's own lines
# (start, stop, worker restarts) go through the same JSON handler.
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "root": {"level": "INFO", "handlers": []},
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": [], "propagate": True},
        "gunicorn.access": {"level": "WARNING", "handlers": [], "propagate": True},
    },
}
# Prometheus multiprocess mode (moviestream_common.metrics): an empty directory at start, dead workers marked.
on_starting = metrics.on_starting
child_exit = metrics.child_exit
