"""The inventory's anchor: the least a Flask app can do to serve GET /api/movies/<id> from PostgreSQL.

Served by the bench with the services' gunicorn settings, against inventory-app's database, with
connections from the standard libpq variables (PGHOST, PGDATABASE, ...).
"""

from __future__ import annotations

import os

from flask import Flask, jsonify
from psycopg_pool import ConnectionPool

threads = int(os.environ.get("GUNICORN_THREADS", "8"))
pool = ConnectionPool(min_size=threads, max_size=threads, kwargs={"autocommit": True})
app = Flask(__name__)


@app.get("/api/movies/<int:movie_id>")
def get_movie(movie_id: int):
    with pool.connection() as conn:
        row = conn.execute("SELECT id, title, description FROM movies WHERE id = %s", [movie_id]).fetchone()
    if row is None:
        return jsonify(error="not found"), 404
    return jsonify(id=row[0], title=row[1], description=row[2])
