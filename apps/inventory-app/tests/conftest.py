from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient

from inventory_app import create_app


@pytest.fixture
def app(database: str) -> Iterator[Flask]:
    app = create_app()
    yield app
    app.extensions["inventory_pool"].close()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def movie(client: FlaskClient) -> dict:
    response = client.post("/api/movies", json={"title": "The Matrix", "description": "Red pill"})
    assert response.status_code == 201
    return response.get_json()
