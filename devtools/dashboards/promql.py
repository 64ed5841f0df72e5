"""What a PromQL query names: the metrics it selects and the labels it reads from them.

Parsing is promql-parser's (the Python binding of the Rust parser GreptimeDB
and others use), so a query that Prometheus would refuse fails here too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import promql_parser

# Grafana's variable query, not PromQL: label_values(selector, label).
LABEL_VALUES = re.compile(r"label_values\((?P<selector>.+),\s*(?P<label>\w+)\s*\)")
# Functions that read or write labels named in string arguments: not modelled, so refused.
LABEL_FUNCTIONS = {"label_replace", "label_join", "sort_by_label", "sort_by_label_desc", "count_values"}


@dataclass(frozen=True)
class Reference:
    """`labels` are read from the series of `metrics` (a selector's own, or those an aggregation or match reads)."""

    metrics: frozenset[str]
    labels: frozenset[str]


def metric_names(node: promql_parser.Expr) -> frozenset[str]:
    names: set[str] = set()

    def visit(child: promql_parser.Expr) -> None:
        if isinstance(child, promql_parser.VectorSelector):
            if child.name is None:
                raise ValueError(f"a selector without a metric name: {child}")
            names.add(child.name)

    promql_parser.walk(node, visit)
    return frozenset(names)


def references(expr: str) -> list[Reference]:
    """Every metric and label `expr` names; ValueError if it does not parse or uses what is not modelled."""
    variable_query = LABEL_VALUES.fullmatch(expr.strip())
    if variable_query:
        selector = variable_query.group("selector")
        return [
            *references(selector),
            Reference(metric_names(promql_parser.parse(selector)), frozenset({variable_query["label"]})),
        ]
    found: list[Reference] = []

    def visit(node: promql_parser.Expr) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            matchers = [*node.matchers.matchers, *(m for group in node.matchers.or_matchers for m in group)]
            labels = frozenset(matcher.name for matcher in matchers) - {"__name__"}
            found.append(Reference(metric_names(node), labels))
        elif isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
            found.append(Reference(metric_names(node.expr), frozenset(node.modifier.labels)))
        elif isinstance(node, promql_parser.BinaryExpr) and node.modifier is not None:
            matching = node.modifier.matching
            labels = [*(matching.labels if matching is not None else []), *node.modifier.group_labels]
            found.append(Reference(metric_names(node), frozenset(labels)))
        elif isinstance(node, promql_parser.Call) and node.func.name in LABEL_FUNCTIONS:
            raise ValueError(f"{node.func.name}() names labels in strings, which this check does not follow")

    promql_parser.walk(promql_parser.parse(expr), visit)
    return found
