from __future__ import annotations

import json
import logging
import threading

import psycopg
import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from inventory_app import create_app, db
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
    engine = postgres.create_engine("unused", pool_size=1)
    with engine.begin() as conn:
        conn.execute(sa.text("SET LOCAL enable_seqscan = off"))
        query = sa.select(*db.COLUMNS).where(db.movies.c.title.ilike("%matrix%"))
        compiled = query.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True})
        plan = "\n".join(conn.execute(sa.text(f"EXPLAIN {compiled}")).scalars())
    assert "movies_title_trgm" in plan


def test_new_titles_go_straight_into_the_trigram_index(app: Flask) -> None:
    engine = postgres.create_engine("unused", pool_size=1)
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


def test_database_down_makes_requests_503_and_readiness_fail(
    database: str, unused_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only the pool points at a closed port: the schema is still made in the test's own database (PGDATABASE).
    with monkeypatch.context() as unreachable:
        unreachable.setenv("PGCONNECT_TIMEOUT", "1")
        unreachable.setenv("PGPORT", str(unused_port))
        pool = postgres.create_pool("unused", size=1)
    app = create_app(pool)
    client = app.test_client()
    response = client.get("/api/movies")
    assert response.status_code == 503
    assert response.get_json() == {"error": "database unavailable, try again"}
    assert client.post("/api/movies", json={"title": "x"}).status_code == 503
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert "postgres" in ready.get_json()["problems"]
    assert client.get("/healthz").status_code == 200
    pool.close()


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


def end_every_connection(database: str) -> int:
    with psycopg.connect(dbname="postgres", autocommit=True) as admin:
        query = "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = %s"
        return admin.execute(query, [database]).fetchone()[0]


def test_connections_a_database_restart_broke_are_replaced_without_failing_a_request(
    client: FlaskClient, movie: dict, database: str
) -> None:
    """As after a restart of PostgreSQL: every pooled connection is gone when the next request arrives."""
    assert end_every_connection(database) >= 1
    assert client.get(f"/api/movies/{movie['id']}").get_json() == movie
    assert end_every_connection(database) >= 1
    assert client.post("/api/movies", json={"title": "After restart"}).status_code == 201
    assert end_every_connection(database) >= 1
    assert [m["title"] for m in client.get("/api/movies").get_json()] == ["The Matrix", "After restart"]
