from __future__ import annotations

import json
import logging
import threading

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.engine import URL

from inventory_app import db
from moviestream_common import postgres


def test_schema_creation_is_idempotent_when_replicas_start_together(database: str) -> None:
    engines = [postgres.create_engine("unused", pool_size=1) for _ in range(6)]
    errors: list[BaseException] = []

    def start(engine: sa.Engine) -> None:
        try:
            db.create_schema(engine)
        except BaseException as exc:  # noqa: BLE001 - the test reports whatever a replica hit
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(engine,)) for engine in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    db.create_schema(engines[0])
    with engines[0].connect() as conn:
        indexes = conn.execute(sa.text("SELECT indexname FROM pg_indexes WHERE tablename = 'movies'")).scalars().all()
    assert "movies_title_trgm" in indexes
    for engine in engines:
        engine.dispose()


def test_title_search_can_use_the_trigram_index(app: Flask) -> None:
    engine = app.extensions["inventory_engine"]
    with engine.begin() as conn:
        conn.execute(sa.text("SET LOCAL enable_seqscan = off"))
        query = sa.select(*db.COLUMNS).where(db.movies.c.title.ilike("%matrix%"))
        compiled = query.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True})
        plan = "\n".join(conn.execute(sa.text(f"EXPLAIN {compiled}")).scalars())
    assert "movies_title_trgm" in plan


def test_new_titles_go_straight_into_the_trigram_index(app: Flask) -> None:
    engine = app.extensions["inventory_engine"]
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER INDEX movies_title_trgm SET (fastupdate = on)"))  # as an older release made it
    db.create_schema(engine)
    with engine.connect() as conn:
        options = conn.execute(sa.text("SELECT reloptions FROM pg_class WHERE relname = 'movies_title_trgm'")).scalar()
    assert options == ["fastupdate=off"]


def test_health_and_readiness_answer_ok_with_a_live_database(client: FlaskClient) -> None:
    assert client.get("/healthz").get_json() == {"status": "ok"}
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_database_down_makes_requests_503_and_readiness_fail(app: Flask, unused_port: int) -> None:
    url: URL = app.extensions["inventory_engine"].url.set(port=unused_port)
    app.extensions["inventory_engine"] = sa.create_engine(url, connect_args={"connect_timeout": 2})
    client = app.test_client()
    response = client.get("/api/movies")
    assert response.status_code == 503
    assert response.get_json() == {"error": "database unavailable, try again"}
    assert client.post("/api/movies", json={"title": "x"}).status_code == 503
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert "postgres" in ready.get_json()["problems"]
    assert client.get("/healthz").status_code == 200


def test_request_id_is_kept_or_made_and_logged_as_json(client: FlaskClient, caplog: pytest.LogCaptureFixture) -> None:
    response = client.get("/api/movies", headers={"X-Request-ID": "abc-123"})
    assert response.headers["X-Request-ID"] == "abc-123"
    assert len(client.get("/api/movies").headers["X-Request-ID"]) == 32
    for unusable in ("x" * 129, "has space", "caf\u00e9"):
        replaced = client.get("/api/movies", headers={"X-Request-ID": unusable}).headers["X-Request-ID"]
        assert len(replaced) == 32
        assert replaced != unusable
    json_formatter = logging.getLogger().handlers[0].formatter
    access = [json.loads(json_formatter.format(record)) for record in caplog.records if record.name == "access"]
    assert access[0]["request_id"] == "abc-123"
    assert access[0] | {"duration_ms": 0, "time": ""} == {
        "level": "INFO",
        "logger": "access",
        "message": "request",
        "service": "inventory-app",
        "time": "",
        "method": "GET",
        "path": "/api/movies",
        "status": 200,
        "duration_ms": 0,
        "request_id": "abc-123",
    }
