from __future__ import annotations

import time

import pytest
from flask.testing import FlaskClient


def test_movie_crud_round_trip_through_the_gateway(gateway: FlaskClient) -> None:
    created = gateway.post("/api/movies", json={"title": "Dune", "description": "Sand"})
    assert created.status_code == 201
    movie = created.get_json()
    assert created.headers["Location"] == f"/api/movies/{movie['id']}"
    assert gateway.get("/api/movies").get_json() == [movie]
    assert gateway.get("/api/movies?title=DUN").get_json() == [movie]
    updated = gateway.put(f"/api/movies/{movie['id']}", json={"title": "Dune: Part One"})
    assert updated.get_json()["title"] == "Dune: Part One"
    assert gateway.delete(f"/api/movies/{movie['id']}").get_json() == {"deleted": 1}
    missing = gateway.get(f"/api/movies/{movie['id']}")
    assert missing.status_code == 404
    assert missing.get_json() == {"error": f"movie {movie['id']} not found"}


def test_inventory_errors_pass_through_unchanged(gateway: FlaskClient) -> None:
    response = gateway.post("/api/movies", data=b"{broken", content_type="application/json")
    assert response.status_code == 400
    assert "body is not valid JSON" in response.get_json()["error"]
    assert gateway.get("/api/movies/abc").status_code == 400
    assert gateway.get("/api/movies?limit=0").status_code == 400


def test_method_path_query_body_and_request_id_reach_the_inventory_unchanged(gateway_for, recorder) -> None:
    client: FlaskClient = gateway_for(recorder.url)
    response = client.put(
        "/api/movies/7/extra?title=a%25b&limit=2",
        data=b'{"title": "x"}',
        content_type="application/json",
        headers={"X-Request-ID": "trace-42", "Cookie": "secret=1"},
    )
    assert response.status_code == 207
    assert response.get_json() == {"ok": True}
    [seen] = recorder.requests
    assert seen["method"] == "PUT"
    assert seen["uri"] == "/api/movies/7/extra?title=a%25b&limit=2"
    assert seen["body"] == b'{"title": "x"}'
    assert seen["headers"]["Content-Type"] == "application/json"
    assert seen["headers"]["X-Request-ID"] == "trace-42"
    assert "Cookie" not in seen["headers"]
    assert response.headers["X-Request-ID"] == "trace-42"


def test_connections_to_the_inventory_are_kept_alive(gateway_for, recorder) -> None:
    client: FlaskClient = gateway_for(recorder.url)
    for _ in range(25):
        assert client.get("/api/movies").status_code == 207
    assert len({seen["client_port"] for seen in recorder.requests}) == 1


def test_unreachable_inventory_answers_502(gateway_for, unused_port) -> None:
    client: FlaskClient = gateway_for(f"http://127.0.0.1:{unused_port}")
    response = client.get("/api/movies")
    assert response.status_code == 502
    assert response.get_json() == {"error": "the inventory API is unreachable"}


@pytest.mark.parametrize("method", ["get", "post"])
def test_inventory_that_does_not_answer_gives_504_after_the_timeout(gateway_for, silent_upstream, method) -> None:
    client: FlaskClient = gateway_for(silent_upstream, INVENTORY_TIMEOUT="0.5")
    started = time.monotonic()
    response = getattr(client, method)("/api/movies", json={"title": "x"})
    assert response.status_code == 504
    assert response.get_json() == {"error": "the inventory API did not answer in time"}
    assert time.monotonic() - started < 3


def test_readiness_names_the_dependency_that_does_not_answer(gateway_for, inventory_url, unused_port) -> None:
    assert gateway_for(inventory_url).get("/readyz").status_code == 200
    down = gateway_for(f"http://127.0.0.1:{unused_port}").get("/readyz")
    assert down.status_code == 503
    assert list(down.get_json()["problems"]) == ["inventory"]
