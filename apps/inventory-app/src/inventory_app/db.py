"""The movies table, its schema and every query the API makes."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

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


def list_movies(conn: Connection, title: str | None, limit: int | None, offset: int) -> list[dict[str, Any]]:
    query = sa.select(*COLUMNS).order_by(movies.c.id)
    if title:
        query = query.where(movies.c.title.ilike(f"%{_escape_like(title)}%", escape="\\"))
    if limit is not None:
        query = query.limit(limit)
    if offset:
        query = query.offset(offset)
    return [dict(row) for row in conn.execute(query).mappings()]


def get_movie(conn: Connection, movie_id: int) -> dict[str, Any] | None:
    row = conn.execute(sa.select(*COLUMNS).where(movies.c.id == movie_id)).mappings().first()
    return dict(row) if row else None


def create_movie(conn: Connection, fields: dict[str, str]) -> dict[str, Any]:
    row = conn.execute(sa.insert(movies).values(**fields).returning(*COLUMNS)).mappings().one()
    return dict(row)


def update_movie(conn: Connection, movie_id: int, fields: dict[str, str]) -> dict[str, Any] | None:
    statement = sa.update(movies).where(movies.c.id == movie_id).values(**fields).returning(*COLUMNS)
    row = conn.execute(statement).mappings().first()
    return dict(row) if row else None


def delete_movie(conn: Connection, movie_id: int) -> bool:
    return conn.execute(sa.delete(movies).where(movies.c.id == movie_id)).rowcount == 1


def delete_all_movies(conn: Connection) -> int:
    return conn.execute(sa.delete(movies)).rowcount
