"""Movie inventory API: `create_app()` is the WSGI application factory."""

from __future__ import annotations

import logging

import psycopg
from flask import Flask
from psycopg_pool import ConnectionPool
from sqlalchemy import exc as sa_exc

from inventory_app import db
from inventory_app.api import bp as movies_bp
from moviestream_common import postgres
from moviestream_common.config import env_float, env_int
from moviestream_common.logs import configure_logging
from moviestream_common.retry import retry_until
from moviestream_common.web import error_response, install_conventions

DEFAULT_DATABASE = "movies_db"
MAX_BODY_BYTES = 64 * 1024

log = logging.getLogger(__name__)


def create_app(pool: ConnectionPool | None = None) -> Flask:
    configure_logging("inventory-app")
    engine = postgres.create_engine(DEFAULT_DATABASE, pool_size=1)
    retry_until(
        lambda: db.create_schema(engine),
        what="creating the schema",
        errors=(sa_exc.OperationalError, sa_exc.InterfaceError),
        timeout=env_float("STARTUP_TIMEOUT", 60.0),
    )
    log.info("schema ready", extra={"database": postgres.describe(engine.url)})
    engine.dispose()
    if pool is None:
        # One connection per gunicorn thread, so no request waits for another's.
        pool = postgres.create_pool(DEFAULT_DATABASE, size=env_int("GUNICORN_THREADS", 8, minimum=1))

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.extensions["inventory_pool"] = pool

    def readiness() -> dict[str, str]:
        try:
            postgres.read(app.extensions["inventory_pool"], "SELECT 1")
        except psycopg.Error as exc:
            return {"postgres": type(exc).__name__}
        return {}

    install_conventions(app, readiness)
    app.register_blueprint(movies_bp)

    @app.errorhandler(psycopg.OperationalError)
    @app.errorhandler(psycopg.InterfaceError)
    def _database_unavailable(exc: psycopg.Error):
        log.warning("database unavailable", extra={"error": str(exc)})
        return error_response(503, "database unavailable, try again")

    return app
