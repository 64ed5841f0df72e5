"""The dashboards' queries against what the local stack really serves: its /metrics and its log lines.

One stack answers a little of everything (movies, an order, a refused
order, a poison message), then each test reads what that left behind.
"""

from __future__ import annotations

import json
import secrets
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from devtools import dashboards
from devtools.dashboards import logql, promql
from devtools.dashboards.catalogue import EXTERNAL_METRICS, TARGET_LABELS
from devtools.e2e.checks import new_user_id, order
from devtools.e2e.local import LocalPlatform
from devtools.stack.local_stack import SERVICES
from devtools.testing import prometheus
from devtools.waiting import wait_for
from moviestream_common.conventions import REQUEST_ID_HEADER

pytestmark = pytest.mark.stack


@dataclass(frozen=True)
class Answer:
    status: int
    request_id: str


def send(url: str, method: str = "GET", body: object = None) -> Answer:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return Answer(answer.status, answer.headers[REQUEST_ID_HEADER])
    except urllib.error.HTTPError as error:
        return Answer(error.code, error.headers[REQUEST_ID_HEADER])


@dataclass(frozen=True)
class Stack:
    platform: LocalPlatform
    movies_request_id: str  # the X-Request-ID of the gateway's answer to GET /api/movies

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.platform.stack.config.port(service)}"

    def log_lines(self, service: str) -> list[str]:
        return self.platform.stack.log_file(service).read_text().splitlines()

    def streams(self) -> list[tuple[dict[str, str], str]]:
        """Each line with the stream labels Alloy would give it."""
        return [(dashboards.stream(service), line) for service in SERVICES for line in self.log_lines(service)]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with LocalPlatform(tmp_path_factory.mktemp("stack")) as platform:
        gateway = platform.gateway_url
        movies = send(gateway + "/api/movies")
        assert movies.status == 200
        assert send(gateway + "/api/movies/00000000-0000-0000-0000-000000000000").status in (400, 404)
        assert send(gateway + "/no-such-path").status == 404
        user = new_user_id()
        assert send(gateway + "/api/billing", "POST", order(user)).status == 200
        assert send(gateway + "/api/billing", "POST", {"user_id": "1"}).status == 400
        poison = f"poison-{secrets.token_hex(8)}"
        platform.publish_raw(b'{"user_id": "1", "number_of_items": "-4"}', poison)
        wait_for(lambda: platform.count_orders(user) == 1, timeout=30, what="the order to be stored")
        wait_for(lambda: platform.dead_letter_reasons(poison), timeout=30, what="the poison message dead-lettered")
        running = Stack(platform, movies.request_id)
        for service in ("api-gateway", "inventory-app"):  # log lines are written in batches, off the request
            wait_for(
                lambda service=service: any(movies.request_id in line for line in running.log_lines(service)),
                timeout=10,
                what=f"{service}'s access line",
            )
        yield running


def scrape(url: str) -> dict[str, set[str]]:
    """Each sample name at `url`/metrics with the label names it carries."""
    try:
        samples = prometheus.scrape(url)
    except urllib.error.HTTPError as error:
        pytest.fail(f"GET {url}/metrics answered {error.code}")
    found: dict[str, set[str]] = {}
    for name, labels in samples:
        found.setdefault(name, set()).update(label for label, _ in labels)
    return found


def test_every_promql_query_names_metrics_and_labels_a_scrape_of_the_stack_exposes(stack: Stack) -> None:
    exposed: dict[str, set[str]] = {}
    for service in SERVICES:
        for name, labels in scrape(stack.url(service)).items():
            exposed.setdefault(name, set()).update(labels)
    known = exposed | {name: set(metric.labels) for name, metric in EXTERNAL_METRICS.items()}
    problems = []
    for path in dashboards.dashboard_files():
        board = dashboards.load(path)
        for query in dashboards.queries(board):
            if query.datasource != "prometheus":
                continue
            for reference in promql.references(dashboards.interpolate(query.expr, dashboards.example_values(board))):
                unknown = reference.metrics - known.keys()
                labels = set().union(*(known.get(name, set()) for name in reference.metrics)) | TARGET_LABELS
                if unknown:
                    problems.append(f"{query.where}: no service exposes {sorted(unknown)} and the catalogue has none")
                elif reference.labels - labels:
                    problems.append(
                        f"{query.where}: {sorted(reference.labels - labels)} on {sorted(reference.metrics)}"
                    )
    assert problems == [], f"exposed by the stack: {sorted(exposed)}"


def json_fields(lines: list[str]) -> set[str]:
    fields: set[str] = set()
    for line in lines:
        try:
            fields |= set(json.loads(line))
        except ValueError:
            continue  # a line that is not JSON carries no field (Loki marks it __error__)
    return fields


def logs_queries() -> list[logql.LogQuery]:
    board = dashboards.load(dashboards.LOGS_DASHBOARD)
    values = dashboards.example_values(board)
    return [
        logql.parse(dashboards.interpolate(q.expr, values)) for q in dashboards.queries(board) if q.datasource == "loki"
    ]


def test_every_logql_query_reads_fields_the_services_log_lines_carry(stack: Stack) -> None:
    fields = json_fields([line for service in SERVICES for line in stack.log_lines(service)])
    assert {"level", "message", "service", "request_id"} <= fields, fields
    for query in logs_queries():
        assert query.parsed_fields() <= fields | set(dashboards.STREAM_LABELS), query
        assert set(query.grouping) <= fields | set(dashboards.STREAM_LABELS), query


def test_every_service_writes_its_lines_as_json(stack: Stack) -> None:
    for service in SERVICES:
        lines = stack.log_lines(service)
        assert lines, service
        assert all(json.loads(line)["service"] == service for line in lines), service


def log_lines_panel(**chosen: str | list[str]) -> logql.LogQuery:
    board = dashboards.load(dashboards.LOGS_DASHBOARD)
    expr = dashboards.panel_expr(board, "Log lines")
    return logql.parse(dashboards.interpolate(expr, dashboards.example_values(board) | chosen))


def test_request_id_of_a_gateway_answer_finds_its_lines_in_the_gateway_and_in_inventory(stack: Stack) -> None:
    kept = log_lines_panel(request_id=stack.movies_request_id).select(stack.streams())
    assert {labels["service"] for labels in kept} == {"api-gateway", "inventory-app"}
    assert {labels["request_id"] for labels in kept} == {stack.movies_request_id}
    assert all(labels["path"] == "/api/movies" for labels in kept)


def test_logs_panel_shows_only_the_chosen_service(stack: Stack) -> None:
    kept = log_lines_panel(service=["inventory-app"]).select(stack.streams())
    assert kept
    assert {labels["service"] for labels in kept} == {"inventory-app"}


def test_logs_panel_with_no_request_id_shows_every_line(stack: Stack) -> None:
    assert len(log_lines_panel().select(stack.streams())) == len(stack.streams())
