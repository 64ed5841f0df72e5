"""The Grafana dashboards in base/grafana/dashboards: their queries, as Grafana would send them.

The tests in tests/dashboards check these queries against what the services
really expose (devtools.dashboards.promql, devtools.dashboards.logql).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devtools import ROOT

DASHBOARDS_DIR = ROOT / "base" / "grafana" / "dashboards"
# The datasources' fixed uids, as base/grafana provisions them.
DATASOURCE_TYPES = {"prometheus": "prometheus", "loki": "loki"}
LOGS_DASHBOARD = DASHBOARDS_DIR / "moviestream-logs.json"
# The labels Alloy gives every log stream; service is the pod's app.kubernetes.io/name.
STREAM_LABELS = ("namespace", "pod", "container", "service")
# What Grafana puts for its own interval variables; any duration parses the same.
BUILT_IN_VARIABLES = {"__rate_interval": "1m", "__interval": "1m", "__range": "1h", "__auto": "1m"}

VARIABLE = re.compile(r"\$(?:\{(?P<braced>\w+)(?::(?P<format>\w+))?\}|(?P<plain>\w+))")


@dataclass(frozen=True)
class Query:
    dashboard: str  # the dashboard's uid
    where: str  # the panel's title and the target's refId, or the variable's name
    datasource: str  # the datasource's uid
    expr: str


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def dashboard_files() -> list[Path]:
    return sorted(DASHBOARDS_DIR.glob("*.json"))


def panels(dashboard: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """Every panel, including those inside collapsed rows."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def queries(dashboard: Mapping[str, Any]) -> list[Query]:
    """Each target of each panel and each query variable, with the datasource it goes to."""
    uid = dashboard["uid"]
    found = []
    for panel in panels(dashboard):
        panel_source = (panel.get("datasource") or {}).get("uid")
        for target in panel.get("targets", []):
            source = (target.get("datasource") or {}).get("uid", panel_source)
            found.append(Query(uid, f"{panel['title']!r} {target['refId']}", source, target["expr"]))
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable["type"] == "query":
            query = variable["query"]
            expr = query["query"] if isinstance(query, dict) else query
            found.append(Query(uid, f"variable {variable['name']}", variable["datasource"]["uid"], expr))
    return found


def stream(service: str) -> dict[str, str]:
    """The STREAM_LABELS of the lines of a pod of `service` on the cluster."""
    return {"namespace": "moviestream", "pod": f"{service}-0", "container": service, "service": service}


def panel_expr(dashboard: Mapping[str, Any], title: str) -> str:
    """The query of the panel titled `title`, which has one."""
    (expr,) = [target["expr"] for panel in panels(dashboard) if panel["title"] == title for target in panel["targets"]]
    return expr


def variables(dashboard: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {variable["name"]: variable for variable in dashboard.get("templating", {}).get("list", [])}


def _regex_escape(value: str) -> str:
    """Grafana's `regex` format (its escapeRegex)."""
    return re.sub(r"[\\^$*+?.()|{}\[\]/]", lambda match: "\\" + match.group(), value)


def interpolate(expr: str, chosen: Mapping[str, str | Sequence[str]]) -> str:
    """`expr` with its variables replaced as Grafana does: several values become (a|b), each regex-escaped.

    Grafana's built-in interval variables get a fixed duration; a variable
    missing from `chosen` is an error, so a query cannot name one the test forgot.
    """

    def replace(match: re.Match[str]) -> str:
        name = match.group("braced") or match.group("plain")
        if name in BUILT_IN_VARIABLES:
            return BUILT_IN_VARIABLES[name]
        if name not in chosen:
            raise KeyError(f"no value chosen for ${name} in {expr!r}")
        value = chosen[name]
        if match.group("format") == "regex":
            return _regex_escape(value if isinstance(value, str) else "|".join(value))
        if match.group("format") is not None:
            raise ValueError(f"format {match.group('format')!r} of ${name} is not modelled here")
        if isinstance(value, str):
            return value
        return "(" + "|".join(_regex_escape(item) for item in value) + ")"

    return VARIABLE.sub(replace, expr)


def example_values(dashboard: Mapping[str, Any]) -> dict[str, str | list[str]]:
    """A value for each variable as "All" gives it: a custom one's allValue or every option; a placeholder else."""
    values: dict[str, str | list[str]] = {}
    for name, variable in variables(dashboard).items():
        if variable["type"] == "custom":
            values[name] = variable.get("allValue") or custom_options(variable)
        elif variable["type"] == "textbox":
            values[name] = ""
        else:
            values[name] = "placeholder"
    return values


def custom_options(variable: Mapping[str, Any]) -> list[str]:
    return [option.strip() for option in variable["query"].split(",")]
