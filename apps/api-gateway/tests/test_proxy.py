from __future__ import annotations

import time

import pytest
from aiohttp import web

from api_gateway import create_app
from devtools.testing.aiohttp_server import BackgroundServer


def test_movie_crud_round_trip_through_the_gateway(gateway: BackgroundServer) -> None:
    created = gateway.post("/api/movies", json={"title": "Dune", "description": "Sand"})
    assert created.status == 201
    movie = created.json()
    assert created.headers["Location"] == f"/api/movies/{movie['id']}"
    assert gateway.get("/api/movies").json() == [movie]
    assert gateway.get("/api/movies?title=DUN").json() == [movie]
    updated = gateway.put(f"/api/movies/{movie['id']}", json={"title": "Dune: Part One"})
    assert updated.json()["title"] == "Dune: Part One"
    assert gateway.delete(f"/api/movies/{movie['id']}").json() == {"deleted": 1}
    missing = gateway.get(f"/api/movies/{movie['id']}")
    assert missing.status == 404
    assert missing.json() == {"error": f"movie {movie['id']} not found"}


def test_inventory_errors_pass_through_unchanged(gateway: BackgroundServer) -> None:
    response = gateway.post("/api/movies", body=b"{broken", headers={"Content-Type": "application/json"})
    assert response.status == 400
    assert "body is not valid JSON" in response.json()["error"]
    assert gateway.get("/api/movies/abc").status == 400
    assert gateway.get("/api/movies?limit=0").status == 400


def test_method_path_query_body_and_request_id_reach_the_inventory_unchanged(gateway_for, recorder) -> None:
    client: BackgroundServer = gateway_for(recorder.url)
    response = client.put(
        "/api/movies/7/extra?title=a%25b&limit=2",
        body=b'{"title": "x"}',
        headers={"Content-Type": "application/json", "X-Request-ID": "trace-42", "Cookie": "secret=1"},
    )
    assert response.status == 207
    assert response.json() == {"ok": True}
    [seen] = recorder.requests
    assert seen["method"] == "PUT"
    assert seen["uri"] == "/api/movies/7/extra?title=a%25b&limit=2"
    assert seen["body"] == b'{"title": "x"}'
    assert seen["headers"]["Content-Type"] == "application/json"
    assert seen["headers"]["X-Request-ID"] == "trace-42"
    assert "Cookie" not in seen["headers"]
    assert seen["headers"]["Accept-Encoding"] == "identity"  # the body is passed on as it comes
    assert seen["headers"]["User-Agent"] == "moviestream-api-gateway"
    assert response.headers["X-Request-ID"] == "trace-42"


def test_connections_to_the_inventory_are_kept_alive(gateway_for, recorder) -> None:
    client: BackgroundServer = gateway_for(recorder.url)
    for _ in range(25):
        assert client.get("/api/movies").status == 207
    assert len({seen["client_port"] for seen in recorder.requests}) == 1


def test_unreachable_inventory_answers_502(gateway_for, unused_port) -> None:
    client: BackgroundServer = gateway_for(f"http://127.0.0.1:{unused_port}")
    response = client.get("/api/movies")
    assert response.status == 502
    assert response.json() == {"error": "the inventory API is unreachable"}


@pytest.mark.parametrize("method", ["get", "post"])
def test_inventory_that_does_not_answer_gives_504_after_the_timeout(gateway_for, silent_upstream, method) -> None:
    client: BackgroundServer = gateway_for(silent_upstream, INVENTORY_TIMEOUT="0.5")
    started = time.monotonic()
    response = getattr(client, method)("/api/movies", json={"title": "x"})
    assert response.status == 504
    assert response.json() == {"error": "the inventory API did not answer in time"}
    assert time.monotonic() - started < 3


def test_inventory_that_cannot_be_connected_to_in_time_gives_504(gateway_for, unaccepting_upstream) -> None:
    client: BackgroundServer = gateway_for(unaccepting_upstream, INVENTORY_CONNECT_TIMEOUT="0.3")
    started = time.monotonic()
    response = client.get("/api/movies")
    assert response.status == 504
    assert response.json() == {"error": "the inventory API did not answer in time"}
    assert time.monotonic() - started < 3


def test_readiness_names_the_dependency_that_does_not_answer(gateway_for, inventory_url, unused_port) -> None:
    assert gateway_for(inventory_url).get("/readyz").status == 200
    down = gateway_for(f"http://127.0.0.1:{unused_port}").get("/readyz")
    assert down.status == 503
    assert list(down.json()["problems"]) == ["inventory"]


def test_an_unusable_request_id_is_replaced_by_one_sent_on_and_returned(gateway_for, recorder) -> None:
    client: BackgroundServer = gateway_for(recorder.url)
    response = client.get("/api/movies", headers={"X-Request-ID": "caf\u00e9 latte"})
    [seen] = recorder.requests
    assert len(response.headers["X-Request-ID"]) == 32
    assert seen["headers"]["X-Request-ID"] == response.headers["X-Request-ID"]


def test_every_route_answers_the_same_with_a_trailing_slash(gateway: BackgroundServer, queue_reader) -> None:
    created = gateway.post("/api/movies/", json={"title": "Dune"})
    assert created.status == 201
    movie = created.json()
    assert gateway.get("/api/movies/").json() == gateway.get("/api/movies").json() == [movie]
    assert gateway.get(f"/api/movies/{movie['id']}/").json() == movie
    assert gateway.put(f"/api/movies/{movie['id']}/", json={"title": "Dune 2"}).json()["title"] == "Dune 2"
    order = {"user_id": "3", "number_of_items": "5", "total_amount": "180"}
    assert gateway.post("/api/billing/", json=order).json() == {"message": "Message posted"}
    assert len(queue_reader()) == 1
    for path in ("/healthz/", "/readyz/", "/openapi.json/", "/docs/"):
        assert gateway.get(path).status == 200, path
    assert gateway.delete("/api/movies/").json() == {"deleted": 1}


def test_a_redirect_from_the_inventory_names_no_internal_host(gateway: BackgroundServer, inventory_url) -> None:
    response = gateway.get("/api/movies//1", redirect=False)
    if 300 <= response.status < 400:
        assert response.headers["Location"] == "/api/movies/1"
        assert response.data == b""  # werkzeug's redirect page quotes the address
    internal = inventory_url.removeprefix("http://")
    assert internal not in str(response.headers)
    assert internal.encode() not in response.data


def test_a_405_names_the_allowed_methods(gateway_for, scripted) -> None:
    server = scripted(
        lambda _: (
            b"HTTP/1.1 405 Method Not Allowed\r\nContent-Type: application/json\r\nAllow: GET, PUT, DELETE\r\n"
            b'Content-Length: 19\r\n\r\n{"error": "no way"}'
        )
    )
    gateway: BackgroundServer = gateway_for(server.url)
    own = gateway.request("POST", "/healthz")
    assert own.status == 405
    assert own.headers["Allow"] == "GET"
    assert own.json() == {"error": "405: Method Not Allowed"}
    proxied = gateway.request("DELETE", "/api/movies/1")
    assert proxied.status == 405
    assert proxied.headers["Allow"] == "GET, PUT, DELETE"
    assert proxied.json() == {"error": "no way"}


def test_an_html_error_of_the_inventory_s_server_comes_out_as_json(gateway_for, scripted) -> None:
    # What gunicorn answers a request line over its 4,094 bytes, before the inventory's application sees it.
    html = b"<html><head><title>Request URI too large</title></head><body>...</body></html>"
    server = scripted(
        lambda _: (
            b"HTTP/1.1 414 Request-URI Too Large\r\nConnection: close\r\nContent-Type: text/html\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(html), html)
        )
    )
    response = gateway_for(server.url).get("/api/movies?title=" + "x" * 8000)
    assert response.status == 414
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    assert response.json() == {"error": "Request-URI Too Long"}


def test_each_path_is_one_resource_of_the_router_and_a_movie_by_id_is_tried_first() -> None:
    # aiohttp's router tries the resources under a path one after the other: one per method (as the
    # routes were once added) made every GET /api/movies/<id> go through three before its own.
    routed = [resource for resource in create_app().router.resources() if not isinstance(resource, web.StaticResource)]
    paths = [resource.canonical for resource in routed]
    assert len(paths) == len(set(paths)), paths
    assert paths.index("/api/movies/{rest}") < paths.index("/api/movies")
