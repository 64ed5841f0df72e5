from __future__ import annotations

import pytest
from flask.testing import FlaskClient


def titles(client: FlaskClient, query: str = "") -> list[str]:
    response = client.get(f"/api/movies{query}")
    assert response.status_code == 200
    return [movie["title"] for movie in response.get_json()]


def test_create_answers_201_with_the_stored_movie_and_its_location(client: FlaskClient) -> None:
    response = client.post("/api/movies", json={"title": "  Alien ", "description": "In space"})
    assert response.status_code == 201
    body = response.get_json()
    assert body == {"id": body["id"], "title": "Alien", "description": "In space"}
    assert response.headers["Location"] == f"/api/movies/{body['id']}"
    assert client.get(f"/api/movies/{body['id']}").get_json() == body


def test_description_is_optional_and_defaults_to_empty(client: FlaskClient) -> None:
    body = client.post("/api/movies", json={"title": "Heat"}).get_json()
    assert body["description"] == ""


def test_list_returns_every_movie_in_creation_order(client: FlaskClient) -> None:
    assert client.get("/api/movies").get_json() == []
    for title in ("Up", "Jaws", "Rocky"):
        client.post("/api/movies", json={"title": title})
    assert titles(client) == ["Up", "Jaws", "Rocky"]


def test_title_search_is_a_case_insensitive_substring_match(client: FlaskClient) -> None:
    for title in ("The Godfather", "The Godfather Part II", "Goodfellas", "godzilla"):
        client.post("/api/movies", json={"title": title})
    assert titles(client, "?title=GOD") == ["The Godfather", "The Godfather Part II", "godzilla"]
    assert titles(client, "?title=fellas") == ["Goodfellas"]
    assert titles(client, "?title=nothing") == []


@pytest.mark.parametrize("term", ["%", "_", "\\"])
def test_title_search_treats_like_wildcards_literally(client: FlaskClient, term: str) -> None:
    client.post("/api/movies", json={"title": "Plain"})
    client.post("/api/movies", json={"title": f"100{term} Pure"})
    assert titles(client, f"?title={term}".replace("%", "%25").replace("\\", "%5C")) == [f"100{term} Pure"]


def test_limit_and_offset_page_through_the_list(client: FlaskClient) -> None:
    for n in range(5):
        client.post("/api/movies", json={"title": f"Movie {n}"})
    assert titles(client, "?limit=2") == ["Movie 0", "Movie 1"]
    assert titles(client, "?limit=2&offset=2") == ["Movie 2", "Movie 3"]
    assert titles(client, "?offset=4") == ["Movie 4"]
    assert titles(client, "?title=movie&limit=1&offset=1") == ["Movie 1"]


@pytest.mark.parametrize("query", ["?limit=0", "?limit=-1", "?limit=abc", "?limit=1001", "?offset=-3", "?offset=1.5"])
def test_bad_paging_values_answer_400(client: FlaskClient, query: str) -> None:
    response = client.get(f"/api/movies{query}")
    assert response.status_code == 400
    assert "must be an integer" in response.get_json()["error"]


def test_put_updates_only_the_given_fields(client: FlaskClient, movie: dict) -> None:
    response = client.put(f"/api/movies/{movie['id']}", json={"description": "Blue pill"})
    assert response.status_code == 200
    assert response.get_json() == {**movie, "description": "Blue pill"}
    response = client.put(f"/api/movies/{movie['id']}", json={"title": "Matrix"})
    assert response.get_json() == {"id": movie["id"], "title": "Matrix", "description": "Blue pill"}


def test_delete_one_removes_only_that_movie(client: FlaskClient, movie: dict) -> None:
    other = client.post("/api/movies", json={"title": "Other"}).get_json()
    response = client.delete(f"/api/movies/{movie['id']}")
    assert response.status_code == 200
    assert response.get_json() == {"deleted": 1}
    assert client.get(f"/api/movies/{movie['id']}").status_code == 404
    assert client.get(f"/api/movies/{other['id']}").status_code == 200


def test_delete_all_removes_every_movie_and_says_how_many(client: FlaskClient) -> None:
    for title in ("A", "B", "C"):
        client.post("/api/movies", json={"title": title})
    assert client.delete("/api/movies").get_json() == {"deleted": 3}
    assert client.get("/api/movies").get_json() == []


@pytest.mark.parametrize("method", ["get", "put", "delete"])
def test_unknown_id_answers_404_with_a_json_error(client: FlaskClient, method: str) -> None:
    response = getattr(client, method)("/api/movies/999999", json={"title": "x"})
    assert response.status_code == 404
    assert response.get_json() == {"error": "movie 999999 not found"}


@pytest.mark.parametrize("raw_id", ["abc", "1.5", "-1", "0x10", "１"])
def test_non_numeric_id_answers_400(client: FlaskClient, raw_id: str) -> None:
    response = client.get(f"/api/movies/{raw_id}")
    assert response.status_code == 400
    assert "positive integer" in response.get_json()["error"]


@pytest.mark.parametrize("raw_id", ["0", "9223372036854775808", "1" * 40])
def test_id_out_of_range_answers_404(client: FlaskClient, raw_id: str) -> None:
    assert client.get(f"/api/movies/{raw_id}").status_code == 404


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "body is not valid JSON"),
        (b"", "body is not valid JSON"),
        (b"\xff\xfe{", "body is not valid JSON"),
        (b'{"title": NaN}', "body is not valid JSON"),
        (b"[" * 100_00 + b"]" * 100_00, "body is not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'"title"', "must be a JSON object"),
        (b"{}", "title is required"),
        (b'{"title": ""}', "non-empty string"),
        (b'{"title": "   "}', "non-empty string"),
        (b'{"title": 42}', "title must be a string"),
        (b'{"title": null}', "title must be a string"),
        (b'{"title": "ok", "description": 7}', "description must be a string"),
        (b'{"title": "ok", "rating": 5}', "unknown field(s): rating"),
        (b'{"title": "' + b"x" * 256 + b'"}', "at most 255 characters"),
        (b'{"title": "nul\\u0000byte"}', "NUL"),
        (b'{"title": "\\ud800"}', None),
    ],
)
def test_bad_movie_bodies_answer_400_and_store_nothing(client: FlaskClient, body: bytes, message: str | None) -> None:
    response = client.post("/api/movies", data=body, content_type="application/json")
    assert response.status_code == 400, response.get_json()
    if message:
        assert message in response.get_json()["error"]
    assert client.get("/api/movies").get_json() == []


def test_bad_update_changes_nothing(client: FlaskClient, movie: dict) -> None:
    response = client.put(f"/api/movies/{movie['id']}", json={"title": "New", "description": None})
    assert response.status_code == 400
    assert client.get(f"/api/movies/{movie['id']}").get_json() == movie
    assert client.put(f"/api/movies/{movie['id']}", json={}).status_code == 400


def test_oversized_body_answers_413(client: FlaskClient) -> None:
    body = b'{"title": "big", "description": "' + b"x" * 70_000 + b'"}'
    response = client.post("/api/movies", data=body, content_type="application/json")
    assert response.status_code == 413
    assert "error" in response.get_json()
    assert client.get("/api/movies").get_json() == []


def test_body_without_json_content_type_is_still_parsed(client: FlaskClient) -> None:
    response = client.post(
        "/api/movies", data=b'{"title": "Curl default"}', content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 201


def test_unknown_route_and_wrong_method_answer_json(client: FlaskClient) -> None:
    assert client.get("/api/nothing").status_code == 404
    assert "error" in client.get("/api/nothing").get_json()
    response = client.patch("/api/movies")
    assert response.status_code == 405
    assert "error" in response.get_json()


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("post", "/api/movies/", 201),
        ("get", "/api/movies/", 200),
        ("delete", "/api/movies/", 200),
        ("get", "/api/movies/{id}/", 200),
        ("put", "/api/movies/{id}/", 200),
        ("delete", "/api/movies/{id}/", 200),
        ("get", "/healthz/", 200),
        ("get", "/readyz/", 200),
    ],
)
def test_a_trailing_slash_is_answered_like_the_path_without_it(
    client: FlaskClient, movie: dict, method: str, path: str, status: int
) -> None:
    response = getattr(client, method)(path.format(id=movie["id"]), json={"title": "Slashed"})
    assert response.status_code == status, response.get_data(as_text=True)
    assert "Location" not in response.headers or response.status_code == 201


@pytest.mark.parametrize("path", ["/api/movies//{id}", "/api//movies/{id}", "/api/movies//"])
def test_doubled_slashes_answer_404_json_and_never_redirect(client: FlaskClient, movie: dict, path: str) -> None:
    response = client.get(path.format(id=movie["id"]))
    assert response.status_code == 404
    assert "Location" not in response.headers
    assert "error" in response.get_json()


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("patch", "/api/movies", {"GET", "HEAD", "OPTIONS", "POST", "DELETE"}),
        ("post", "/api/movies/1", {"GET", "HEAD", "OPTIONS", "PUT", "DELETE"}),
        ("post", "/healthz", {"GET", "HEAD", "OPTIONS"}),
    ],
)
def test_wrong_method_answers_405_json_with_the_allow_header(
    client: FlaskClient, method: str, path: str, allowed: set[str]
) -> None:
    response = getattr(client, method)(path)
    assert response.status_code == 405
    assert response.content_type == "application/json"
    assert "error" in response.get_json()
    assert {m.strip() for m in response.headers["Allow"].split(",")} == allowed


def test_a_field_given_twice_is_refused_not_taken_from_its_last_copy(client: FlaskClient) -> None:
    response = client.post(
        "/api/movies", data=b'{"title": "Alien", "title": "Heat"}', headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert "duplicate field(s): title" in response.get_json()["error"]
    assert client.get("/api/movies").get_json() == []
