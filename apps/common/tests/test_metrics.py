"""The services' request metrics and /metrics (moviestream_common.metrics), in a Flask app and across processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from devtools.testing.prometheus import Samples, parse, value
from moviestream_common.web import install_conventions

REQUESTS = "moviestream_http_requests_total"


@pytest.fixture
def client() -> FlaskClient:
    app = Flask(__name__)
    install_conventions(app, dict)

    @app.get("/things/<int:thing_id>")
    def thing(thing_id: int) -> dict[str, int]:
        return {"id": thing_id}

    @app.get("/broken")
    def broken() -> None:
        raise RuntimeError("a bug")

    return app.test_client()


def scrape(client: FlaskClient) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain; version=")
    return parse(response.get_data(as_text=True))


def test_requests_are_counted_by_route_template_method_and_status(client: FlaskClient) -> None:
    before = scrape(client)
    for path in ("/things/1", "/things/2", "/things/3/"):  # with a trailing slash, the same endpoint and series
        assert client.get(path).status_code == 200
    assert client.get("/no/such/path").status_code == 404
    assert client.post("/things/1").status_code == 405
    after = scrape(client)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved(REQUESTS, route="/things/{thing_id}", method="GET", status="200") == 3
    assert moved("moviestream_http_request_duration_seconds_count", route="/things/{thing_id}", method="GET") == 3
    assert moved(REQUESTS, route="unmatched", method="GET", status="404") == 1
    assert moved(REQUESTS, route="unmatched", method="POST", status="405") == 1


def test_an_answer_of_an_error_handler_is_counted_under_its_route(client: FlaskClient) -> None:
    before = scrape(client)
    assert client.get("/broken").status_code == 500
    assert client.get("/things/0x1").status_code == 404  # the converter refuses it: no route matched
    after = scrape(client)
    assert value(after, REQUESTS, route="/broken", method="GET", status="500") == (
        value(before, REQUESTS, route="/broken", method="GET", status="500") + 1
    )
    assert value(after, REQUESTS, route="unmatched", method="GET", status="404") == (
        value(before, REQUESTS, route="unmatched", method="GET", status="404") + 1
    )


def test_a_method_a_client_invents_is_counted_as_other(client: FlaskClient) -> None:
    before = scrape(client)
    client.open("/things/1", method="BREW")
    assert value(scrape(client), REQUESTS, route="unmatched", method="other", status="405") == (
        value(before, REQUESTS, route="unmatched", method="other", status="405") + 1
    )
    assert not any(("method", "BREW") in labels for _, labels in scrape(client))


def test_scrapes_are_not_counted(client: FlaskClient) -> None:
    scrape(client)
    assert not any(("route", "/metrics") in labels for _, labels in scrape(client))


def load_metrics(directory: Path, **env: str) -> None:
    subprocess.run(
        [sys.executable, "-c", "import moviestream_common.metrics"],
        env=os.environ | {"PROMETHEUS_MULTIPROC_DIR": str(directory)} | env,
        check=True,
    )


def test_a_service_started_on_its_own_empties_the_metrics_directory(tmp_path: Path) -> None:
    # A restarted container finds its emptyDir as the last run left it.
    stale = tmp_path / "metrics" / "counter_1.db"
    stale.parent.mkdir()
    stale.write_bytes(b"counts of an earlier run")
    load_metrics(stale.parent)
    assert not stale.exists()


def test_a_worker_leaves_the_directory_its_parent_emptied(tmp_path: Path) -> None:
    other_worker = tmp_path / "counter_2.db"
    other_worker.write_bytes(b"another worker's counts")
    load_metrics(tmp_path, MOVIESTREAM_METRICS_EMPTIED_BY=str(os.getpid()))  # we are the subprocess's parent
    assert other_worker.exists()
