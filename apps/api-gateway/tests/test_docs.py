from __future__ import annotations

import re

from flask.testing import FlaskClient
from openapi_spec_validator import validate


def test_openapi_document_is_valid_and_served(gateway: FlaskClient) -> None:
    response = gateway.get("/openapi.json")
    assert response.status_code == 200
    validate(response.get_json())


def test_every_route_is_documented_and_every_documented_path_exists(gateway: FlaskClient) -> None:
    document = gateway.get("/openapi.json").get_json()
    documented = {
        (path, method.upper()) for path, item in document["paths"].items() for method in item if method != "parameters"
    }
    routes = set()
    for rule in gateway.application.url_map.iter_rules():
        if rule.rule.startswith(("/docs", "/openapi", "/static")) or "<path:" in rule.rule:
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        routes |= {(path, method) for method in rule.methods - {"HEAD", "OPTIONS"}}
    movie_methods = {("/api/movies", m) for m in ("GET", "POST", "DELETE")}
    movie_methods |= {("/api/movies/{id}", m) for m in ("GET", "PUT", "DELETE")}
    assert documented == routes - {("/api/movies", "PUT"), ("/api/movies", "PATCH")} | movie_methods


def test_swagger_ui_is_served_without_internet(gateway: FlaskClient) -> None:
    page = gateway.get("/docs")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert assets
    for asset in assets:
        assert asset.startswith("/docs/"), f"{asset} would need the internet"
        assert gateway.get(asset).status_code == 200
    assert '"/openapi.json"' in gateway.get("/docs/swagger-initializer.js").get_data(as_text=True)
