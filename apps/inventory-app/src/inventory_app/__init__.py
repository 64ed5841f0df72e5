"""Movie inventory API: `create_app()` is the WSGI application factory."""

from __future__ import annotations

import logging

from flask import Flask
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine

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


def create_app(engine: Engine | None = None) -> Flask:
    configure_logging("inventory-app")
    if engine is None:
        # One pooled connection per gunicorn thread, so no request waits for another's.
        engine = postgres.create_engine(DEFAULT_DATABASE, pool_size=env_int("GUNICORN_THREADS", 8, minimum=1))
    retry_until(
        lambda: db.create_schema(engine),
        what="creating the schema",
        errors=(sa_exc.OperationalError, sa_exc.InterfaceError),
        timeout=env_float("STARTUP_TIMEOUT", 60.0),
    )
    log.info("schema ready", extra={"database": postgres.describe(engine.url)})

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.extensions["inventory_engine"] = engine

    def readiness() -> dict[str, str]:
        try:
            postgres.ping(app.extensions["inventory_engine"])
        except sa_exc.SQLAlchemyError as exc:
            return {"postgres": type(exc).__name__}
        return {}

    install_conventions(app, readiness)
    app.register_blueprint(movies_bp)

    @app.errorhandler(sa_exc.OperationalError)
    @app.errorhandler(sa_exc.InterfaceError)
    def _database_unavailable(exc: sa_exc.DBAPIError):
        log.warning("database unavailable", extra={"error": str(exc.orig)})
        return error_response(503, "database unavailable, try again")

    return app
