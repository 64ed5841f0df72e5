"""The dashboards in base/grafana/dashboards load in Grafana, and each query parses and names what exists."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devtools import ROOT, dashboards
from devtools.dashboards import logql, promql
from devtools.dashboards.catalogue import EXTERNAL_METRICS, TARGET_LABELS
from devtools.gitops.manifests import render
from devtools.stack.local_stack import SERVICES
from moviestream_common.logs import configure_logging
from moviestream_common.rabbitmq import BillingQueue

FILES = dashboards.dashboard_files()
UID = re.compile(r"[A-Za-z0-9_-]{1,40}")  # Grafana's rule for a dashboard uid


def all_queries(datasource: str) -> list[dashboards.Query]:
    return [
        query for path in FILES for query in dashboards.queries(dashboards.load(path)) if query.datasource == datasource
    ]


def interpolated(query: dashboards.Query) -> str:
    board = next(dashboards.load(path) for path in FILES if dashboards.load(path)["uid"] == query.dashboard)
    return dashboards.interpolate(query.expr, dashboards.example_values(board))


def test_the_two_dashboards_of_the_issue_are_there() -> None:
    titles = {dashboards.load(path)["title"]: path.name for path in FILES}
    assert titles == {"moviestream": "moviestream.json", "moviestream logs": "moviestream-logs.json"}


@pytest.mark.parametrize("path", FILES, ids=lambda path: path.name)
def test_dashboard_is_a_provisionable_grafana_dashboard(path: Path) -> None:
    board = dashboards.load(path)
    assert UID.fullmatch(board["uid"]), board["uid"]
    assert path.name == f"{board['uid']}.json", "one file per dashboard, named for its uid"
    assert board.get("id") is None, "a provisioned dashboard gets its id from Grafana"
    assert isinstance(board["schemaVersion"], int)
    assert board["schemaVersion"] >= 36
    assert board["editable"] is False, "the dashboards are edited in git, never in the UI"
    assert board["title"]
    assert board["time"]["from"]
    assert board["panels"]


def panel_list(path: Path) -> Iterator[dict[str, Any]]:
    yield from dashboards.panels(dashboards.load(path))


@pytest.mark.parametrize("path", FILES, ids=lambda path: path.name)
def test_panel_ids_are_unique_and_every_panel_fits_the_grid(path: Path) -> None:
    ids = [panel["id"] for panel in panel_list(path)]
    assert len(ids) == len(set(ids)), f"duplicate panel ids in {ids}"
    for panel in panel_list(path):
        grid = panel["gridPos"]
        assert all(isinstance(grid[key], int) for key in ("h", "w", "x", "y")), panel["title"]
        assert grid["w"] > 0, panel["title"]
        assert grid["h"] > 0, panel["title"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]


@pytest.mark.parametrize("path", FILES, ids=lambda path: path.name)
def test_every_query_goes_to_a_provisioned_datasource_by_its_fixed_uid(path: Path) -> None:
    board = dashboards.load(path)
    sources = [panel["datasource"] for panel in dashboards.panels(board) if panel["type"] != "row"]
    sources += [target["datasource"] for panel in dashboards.panels(board) for target in panel.get("targets", [])]
    sources += [variable["datasource"] for variable in board["templating"]["list"] if "datasource" in variable]
    assert sources
    for source in sources:
        assert dashboards.DATASOURCE_TYPES.get(source["uid"]) == source["type"], source


@pytest.mark.parametrize("path", FILES, ids=lambda path: path.name)
def test_every_repeat_and_title_names_variables_of_its_dashboard(path: Path) -> None:
    board = dashboards.load(path)
    for panel in dashboards.panels(board):
        if "repeat" in panel:
            assert panel["repeat"] in dashboards.variables(board), panel["title"]
        dashboards.interpolate(panel["title"], dashboards.example_values(board))  # KeyError names an unknown one


@pytest.mark.parametrize("query", all_queries("prometheus"), ids=lambda query: f"{query.dashboard} {query.where}")
def test_promql_query_parses(query: dashboards.Query) -> None:
    assert promql.references(interpolated(query))


@pytest.mark.parametrize("query", all_queries("loki"), ids=lambda query: f"{query.dashboard} {query.where}")
def test_logql_query_parses_and_selects_streams_by_the_labels_alloy_gives(query: dashboards.Query) -> None:
    parsed = logql.parse(interpolated(query))
    assert parsed.stream_labels() <= set(dashboards.STREAM_LABELS)
    assert parsed.unparsed_labels() <= set(dashboards.STREAM_LABELS)


def test_metrics_from_outside_the_services_are_in_the_catalogue_with_their_labels() -> None:
    used = set()
    for query in all_queries("prometheus"):
        for reference in promql.references(interpolated(query)):
            outside = {name for name in reference.metrics if not name.startswith("moviestream_")}
            used |= outside
            if outside and outside == reference.metrics:
                known = set().union(*(EXTERNAL_METRICS[name].labels for name in outside)) | TARGET_LABELS
                assert reference.labels <= known, f"{query.where}: {reference.labels - known} on {outside}"
    assert used <= EXTERNAL_METRICS.keys(), f"not in the catalogue: {used - EXTERNAL_METRICS.keys()}"
    assert used == EXTERNAL_METRICS.keys(), f"listed but used by no dashboard: {EXTERNAL_METRICS.keys() - used}"
    assert all(metric.source for metric in EXTERNAL_METRICS.values())


def logs_board() -> dict[str, Any]:
    return dashboards.load(dashboards.LOGS_DASHBOARD)


def test_logs_dashboard_offers_each_service_by_its_name() -> None:
    service = dashboards.variables(logs_board())["service"]
    assert sorted(dashboards.custom_options(service)) == sorted(SERVICES)


def test_logs_dashboard_offers_the_levels_python_logging_writes() -> None:
    level = dashboards.variables(logs_board())["level"]
    assert set(dashboards.custom_options(level)) == {
        logging.getLevelName(number)
        for number in (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL)
    }


def logged_lines(service: str, write: Any) -> list[str]:
    """The lines configure_logging(service) writes while `write()` logs, as the pod's stdout carries them."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    stdout = io.StringIO()
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr("sys.stdout", stdout)
            configure_logging(service)
        write()
        root.handlers[0].flush()
    finally:
        root.handlers[0].close()
        root.handlers[:], root.level = handlers, level
    return stdout.getvalue().splitlines()


def test_errors_panel_counts_an_error_a_service_logs_and_not_its_warnings() -> None:
    def write() -> None:
        log = logging.getLogger("inventory_app")
        log.warning("database unavailable")
        log.error("unhandled error", extra={"request_id": "abc"})

    lines = logged_lines("inventory-app", write)
    assert [json.loads(line)["level"] for line in lines] == ["WARNING", "ERROR"]
    board = logs_board()
    errors = logql.parse(
        dashboards.interpolate(dashboards.panel_expr(board, "Errors per service"), dashboards.example_values(board))
    )
    kept = errors.select([(dashboards.stream("inventory-app"), line) for line in lines])
    assert [(labels["service"], labels["message"]) for labels in kept] == [("inventory-app", "unhandled error")]


@pytest.fixture(scope="module")
def base_objects() -> list[dict[str, Any]]:
    return [rendered.obj for rendered in render(ROOT / "base")]


def dashboard_text() -> str:
    return "\n".join(path.read_text() for path in FILES)


def test_autoscaler_panel_names_the_horizontal_pod_autoscalers_of_the_base(base_objects: list[dict[str, Any]]) -> None:
    named = set(re.findall(r'horizontalpodautoscaler=~\\"([^"\\]+)\\"', dashboard_text()))
    assert len(named) == 1, named
    hpas = {obj["metadata"]["name"] for obj in base_objects if obj["kind"] == "HorizontalPodAutoscaler"}
    assert set(named.pop().split("|")) == hpas


def test_queue_panel_names_the_billing_queue_of_the_base_and_its_dead_letter_queue(
    base_objects: list[dict[str, Any]],
) -> None:
    queues = {obj["data"]["BILLING_QUEUE"] for obj in base_objects if "BILLING_QUEUE" in obj.get("data", {})}
    assert len(queues) == 1, queues
    queue = BillingQueue(queues.pop())
    assert set(re.findall(r'queue=\\"([^"\\]+)\\"', dashboard_text())) == {queue.name, queue.dead_letter}


def test_service_choices_are_the_pod_names_alloy_labels_streams_with(base_objects: list[dict[str, Any]]) -> None:
    pods = {
        obj["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"]
        for obj in base_objects
        if obj["kind"] in ("Deployment", "StatefulSet")
    }
    service = dashboards.variables(logs_board())["service"]
    assert set(dashboards.custom_options(service)) <= pods
