"""The movies table: its schema (SQLAlchemy, which creates it) and every query the API makes (psycopg)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from psycopg import sql
from psycopg_pool import ConnectionPool
from sqlalchemy.engine import Engine

from moviestream_common import postgres

TITLE_MAX = 255
DESCRIPTION_MAX = 5000
# Any constant works; it only has to be the same for every replica.
SCHEMA_LOCK_KEY = 0x6D6F76696573  # "movies"

metadata = sa.MetaData()
movies = sa.Table(
    "movies",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.CheckConstraint(f"char_length(title) BETWEEN 1 AND {TITLE_MAX}", name="movies_title_length"),
    sa.CheckConstraint(f"char_length(description) <= {DESCRIPTION_MAX}", name="movies_description_length"),
    # A trigram index serves ILIKE '%term%' without reading the whole table. Without fastupdate, new titles
    # go into the index itself rather than a pending list that every search would scan until a VACUUM.
    sa.Index(
        "movies_title_trgm",
        "title",
        postgresql_using="gin",
        postgresql_ops={"title": "gin_trgm_ops"},
        postgresql_with={"fastupdate": "off"},
    ),
)

COLUMNS = (movies.c.id, movies.c.title, movies.c.description)


def create_schema(engine: Engine) -> None:
    postgres.create_schema(engine, metadata, lock_key=SCHEMA_LOCK_KEY, extensions=("pg_trgm",))
    with engine.begin() as conn:
        # A database made before the index had this option gets it too.
        conn.execute(sa.text("ALTER INDEX movies_title_trgm SET (fastupdate = off)"))


def _escape_like(term: str) -> str:
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


# The queries are plain SQL on psycopg's pool: SQLAlchemy's layers, with a ping at every checkout, cost
# about 40% of the CPU of a read by id (issue 13).
# Their column lists are COLUMNS'.
SELECT = "SELECT id, title, description FROM movies"


def _movie(row: tuple) -> dict[str, Any]:
    return {"id": row[0], "title": row[1], "description": row[2]}


def list_movies(pool: ConnectionPool, title: str | None, limit: int | None, offset: int) -> list[dict[str, Any]]:
    query, params = SELECT, []
    if title:
        query += " WHERE title ILIKE %s ESCAPE '\\'"
        params.append(f"%{_escape_like(title)}%")
    query += " ORDER BY id"
    if limit is not None:
        query += " LIMIT %s"
        params.append(limit)
    if offset:
        query += " OFFSET %s"
        params.append(offset)
    return [_movie(row) for row in postgres.read(pool, query, params)]


def get_movie(pool: ConnectionPool, movie_id: int) -> dict[str, Any] | None:
    rows = postgres.read(pool, SELECT + " WHERE id = %s", [movie_id])
    return _movie(rows[0]) if rows else None


def _assignments(fields: dict[str, str]) -> sql.Composed:
    return sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(name)) for name in fields)


def create_movie(pool: ConnectionPool, fields: dict[str, str]) -> dict[str, Any]:
    columns = sql.SQL(", ").join(map(sql.Identifier, fields))
    values = sql.SQL(", ").join(sql.Placeholder() * len(fields))
    query = sql.SQL("INSERT INTO movies ({}) VALUES ({}) RETURNING id, title, description").format(columns, values)
    with postgres.writing(pool) as conn:
        return _movie(conn.execute(query, list(fields.values())).fetchone())


def update_movie(pool: ConnectionPool, movie_id: int, fields: dict[str, str]) -> dict[str, Any] | None:
    query = sql.SQL("UPDATE movies SET {} WHERE id = %s RETURNING id, title, description").format(_assignments(fields))
    with postgres.writing(pool) as conn:
        row = conn.execute(query, [*fields.values(), movie_id]).fetchone()
    return _movie(row) if row else None


def delete_movie(pool: ConnectionPool, movie_id: int) -> bool:
    with postgres.writing(pool) as conn:
        return conn.execute("DELETE FROM movies WHERE id = %s", [movie_id]).rowcount == 1


def delete_all_movies(pool: ConnectionPool) -> int:
    with postgres.writing(pool) as conn:
        return conn.execute("DELETE FROM movies").rowcount
