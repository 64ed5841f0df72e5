"""The /api/movies resource."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from psycopg_pool import ConnectionPool

from inventory_app import db
from moviestream_common.web import ApiError, json_body

MAX_PAGE = 1000
MAX_OFFSET = 2**31 - 1
MAX_ID = 2**63 - 1

bp = Blueprint("movies", __name__, url_prefix="/api/movies")


def _pool() -> ConnectionPool:
    return current_app.extensions["inventory_pool"]


def _movie_id(raw: str) -> int:
    if not raw.isascii() or not raw.isdigit():
        raise ApiError(400, f"movie id must be a positive integer, got {raw!r}")
    movie_id = int(raw)
    if not 1 <= movie_id <= MAX_ID:
        raise ApiError(404, f"movie {raw} not found")
    return movie_id


def _query_int(name: str, *, minimum: int, maximum: int) -> int | None:
    raw = request.args.get(name)
    if raw is None:
        return None
    if not raw.isascii() or not raw.isdigit() or not minimum <= int(raw) <= maximum:
        raise ApiError(400, f"{name} must be an integer between {minimum} and {maximum}, got {raw!r}")
    return int(raw)


def _movie_fields(*, partial: bool) -> dict[str, str]:
    data = json_body()
    if not isinstance(data, dict):
        raise ApiError(400, "the body must be a JSON object")
    unknown = sorted(set(data) - {"title", "description"})
    if unknown:
        raise ApiError(400, f"unknown field(s): {', '.join(unknown)}")
    if not partial and "title" not in data:
        raise ApiError(400, "title is required")
    if not data:
        raise ApiError(400, "give title and/or description")
    fields: dict[str, str] = {}
    if "title" in data:
        title = _text(data["title"], "title", db.TITLE_MAX).strip()
        if not title:
            raise ApiError(400, "title must be a non-empty string")
        fields["title"] = title
    if "description" in data:
        fields["description"] = _text(data["description"], "description", db.DESCRIPTION_MAX)
    return fields


def _text(value: Any, field: str, maximum: int) -> str:
    if not isinstance(value, str):
        raise ApiError(400, f"{field} must be a string")
    if len(value) > maximum:
        raise ApiError(400, f"{field} must be at most {maximum} characters")
    if "\x00" in value:
        raise ApiError(400, f"{field} must not contain NUL characters")
    try:
        value.encode()
    except UnicodeEncodeError:
        raise ApiError(400, f"{field} must be valid Unicode text") from None
    return value


@bp.get("")
def list_movies() -> Response:
    title = request.args.get("title")
    if title is not None:
        _text(title, "title", db.TITLE_MAX)
    limit = _query_int("limit", minimum=1, maximum=MAX_PAGE)
    offset = _query_int("offset", minimum=0, maximum=MAX_OFFSET) or 0
    return jsonify(db.list_movies(_pool(), title, limit, offset))


@bp.post("")
def create_movie() -> tuple[Response, int, dict[str, str]]:
    fields = _movie_fields(partial=False)
    movie = db.create_movie(_pool(), fields)
    return jsonify(movie), 201, {"Location": f"/api/movies/{movie['id']}"}


@bp.delete("")
def delete_all_movies() -> Response:
    return jsonify(deleted=db.delete_all_movies(_pool()))


@bp.get("/<raw_id>")
def get_movie(raw_id: str) -> Response:
    movie_id = _movie_id(raw_id)
    movie = db.get_movie(_pool(), movie_id)
    if movie is None:
        raise ApiError(404, f"movie {movie_id} not found")
    return jsonify(movie)


@bp.put("/<raw_id>")
def update_movie(raw_id: str) -> Response:
    movie_id = _movie_id(raw_id)
    fields = _movie_fields(partial=True)
    movie = db.update_movie(_pool(), movie_id, fields)
    if movie is None:
        raise ApiError(404, f"movie {movie_id} not found")
    return jsonify(movie)


@bp.delete("/<raw_id>")
def delete_movie(raw_id: str) -> Response:
    movie_id = _movie_id(raw_id)
    deleted = db.delete_movie(_pool(), movie_id)
    if not deleted:
        raise ApiError(404, f"movie {movie_id} not found")
    return jsonify(deleted=1)
