"""The part of LogQL the dashboards use: parsed strictly, and run over log lines the way Loki runs it.

No maintained Python parser of LogQL exists, so this one knows only what
the dashboards need and refuses the rest with a ValueError, which makes a
test fail rather than check a query it cannot read:

    query    := [AGG [by|without (labels)] "("] RANGE "(" log "[" duration "]" ")" [")"]  |  log
    log      := "{" matcher ("," matcher)* "}" stage*
    stage    := ("|=" | "!=" | "|~" | "!~") string       a line filter
              | "|" "json"                                 every top-level field becomes a label
              | "|" label ("=" | "!=" | "=~" | "!~") string  a label filter
    matcher  := label ("=" | "!=" | "=~" | "!~") string

Strings are "double-quoted" (Go escapes) or `raw`; regular expressions of
matchers are anchored at both ends, those of line filters are not, as in Loki.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

AGGREGATIONS = {"sum", "count", "max", "min", "avg"}
RANGE_FUNCTIONS = {"count_over_time", "rate", "bytes_over_time", "bytes_rate"}
# Labels Loki itself sets while it runs a pipeline.
PIPELINE_LABELS = {"__error__", "__error_details__"}

TOKEN = re.compile(
    r"""\s*(?:
      (?P<string>"(?:[^"\\]|\\.)*"|`[^`]*`)
    | (?P<duration>\d+(?:ms|[smhdwy]))
    | (?P<op>\|=|\|~|!=|!~|=~|=|\|)
    | (?P<punct>[{}()\[\],])
    | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    )""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class Matcher:
    name: str
    op: str
    value: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.name, "")  # Loki compares a missing label as ""
        if self.op in ("=", "!="):
            return (actual == self.value) == (self.op == "=")
        return (re.fullmatch(self.value, actual) is not None) == (self.op == "=~")


@dataclass(frozen=True)
class LineFilter:
    op: str
    text: str

    def keeps(self, line: str) -> bool:
        if self.op in ("|=", "!="):
            return (self.text in line) == (self.op == "|=")
        return (re.search(self.text, line) is not None) == (self.op == "|~")


@dataclass(frozen=True)
class Json:
    pass


@dataclass(frozen=True)
class LabelFilter:
    matcher: Matcher


Stage = LineFilter | Json | LabelFilter


@dataclass(frozen=True)
class LogQuery:
    selector: tuple[Matcher, ...]
    stages: tuple[Stage, ...]
    grouping: tuple[str, ...] = ()  # the labels of `by (...)` of a metric query

    def stream_labels(self) -> set[str]:
        return {matcher.name for matcher in self.selector}

    def parsed_fields(self) -> set[str]:
        """The labels label filters read after `| json`: fields of the line (or stream labels)."""
        fields: set[str] = set()
        parsed = False
        for stage in self.stages:
            parsed = parsed or isinstance(stage, Json)
            if parsed and isinstance(stage, LabelFilter):
                fields.add(stage.matcher.name)
        return fields - PIPELINE_LABELS

    def unparsed_labels(self) -> set[str]:
        """The labels label filters read before any `| json`: stream labels only."""
        labels: set[str] = set()
        for stage in self.stages:
            if isinstance(stage, Json):
                break
            if isinstance(stage, LabelFilter):
                labels.add(stage.matcher.name)
        return labels - PIPELINE_LABELS

    def select(self, streams: Iterable[tuple[Mapping[str, str], str]]) -> list[dict[str, str]]:
        """The labels of each (stream labels, line) the query keeps, as Loki would give them."""
        kept = []
        for stream, line in streams:
            if not all(matcher.matches(stream) for matcher in self.selector):
                continue
            labels = dict(stream)
            if all(self._apply(stage, line, labels) for stage in self.stages):
                kept.append(labels)
        return kept

    @staticmethod
    def _apply(stage: Stage, line: str, labels: dict[str, str]) -> bool:
        if isinstance(stage, LineFilter):
            return stage.keeps(line)
        if isinstance(stage, LabelFilter):
            return stage.matcher.matches(labels)
        try:
            fields = json.loads(line)
        except ValueError:
            fields = None
        if not isinstance(fields, dict):
            labels["__error__"] = "JSONParserErr"
            return True
        for name, value in fields.items():
            # Loki keeps a stream label and renames the field that would overwrite it.
            key = f"{name}_extracted" if name in labels else name
            labels[key] = value if isinstance(value, str) else json.dumps(value)
        return True


class _Tokens:
    def __init__(self, text: str) -> None:
        self.text = text
        self.items: list[tuple[str, str]] = []
        position = 0
        while position < len(text.rstrip()):
            match = TOKEN.match(text, position)
            if match is None or match.end() == position:
                raise ValueError(f"cannot read {text[position:]!r} in {text!r}")
            self.items.append((match.lastgroup or "", match.group(match.lastgroup or 0)))
            position = match.end()
        self.index = 0

    def peek(self) -> tuple[str, str] | None:
        return self.items[self.index] if self.index < len(self.items) else None

    def take(self, kind: str, value: str | None = None) -> str:
        token = self.peek()
        if token is None or token[0] != kind or (value is not None and token[1] != value):
            wanted = value or kind
            raise ValueError(f"expected {wanted} at token {self.index} ({token}) in {self.text!r}")
        self.index += 1
        return token[1]

    def string(self) -> str:
        raw = self.take("string")
        return raw[1:-1] if raw.startswith("`") else ast.literal_eval(raw)

    def done(self) -> bool:
        return self.index == len(self.items)


def parse(text: str) -> LogQuery:
    tokens = _Tokens(text)
    grouping: tuple[str, ...] = ()
    first = tokens.peek()
    if first is not None and first[0] == "ident":
        name = tokens.take("ident")
        if name in AGGREGATIONS:
            if tokens.peek() == ("ident", "by"):
                tokens.take("ident")
                grouping = _labels(tokens)
            tokens.take("punct", "(")
            name = tokens.take("ident")
        if name not in RANGE_FUNCTIONS:
            raise ValueError(f"{name} is not a range function this parser knows, in {text!r}")
        tokens.take("punct", "(")
        query = _log_query(tokens)
        tokens.take("punct", "[")
        tokens.take("duration")
        tokens.take("punct", "]")
        tokens.take("punct", ")")
        if first[1] in AGGREGATIONS:
            tokens.take("punct", ")")
        query = LogQuery(query.selector, query.stages, grouping)
    else:
        query = _log_query(tokens)
    if not tokens.done():
        raise ValueError(f"unexpected {tokens.peek()} after the query in {text!r}")
    return query


def _labels(tokens: _Tokens) -> tuple[str, ...]:
    tokens.take("punct", "(")
    names = [tokens.take("ident")]
    while tokens.peek() == ("punct", ","):
        tokens.take("punct", ",")
        names.append(tokens.take("ident"))
    tokens.take("punct", ")")
    return tuple(names)


def _matcher(tokens: _Tokens) -> Matcher:
    name = tokens.take("ident")
    op = tokens.take("op")
    if op not in ("=", "!=", "=~", "!~"):
        raise ValueError(f"{op} is not a label comparison in {tokens.text!r}")
    return Matcher(name, op, tokens.string())


def _log_query(tokens: _Tokens) -> LogQuery:
    tokens.take("punct", "{")
    selector = [_matcher(tokens)]
    while tokens.peek() == ("punct", ","):
        tokens.take("punct", ",")
        selector.append(_matcher(tokens))
    tokens.take("punct", "}")
    if not any(matcher.op in ("=", "=~") and not re.fullmatch(matcher.value, "") for matcher in selector):
        raise ValueError(f"Loki needs a matcher that cannot match an empty value, in {tokens.text!r}")
    stages: list[Stage] = []
    while (token := tokens.peek()) is not None and token[0] == "op":
        op = tokens.take("op")
        if op in ("|=", "!=", "|~", "!~"):
            stages.append(LineFilter(op, tokens.string()))
        elif op == "|" and tokens.peek() == ("ident", "json"):
            tokens.take("ident")
            stages.append(Json())
        elif op == "|":
            stages.append(LabelFilter(_matcher(tokens)))
        else:
            raise ValueError(f"unexpected {op} in {tokens.text!r}")
    return LogQuery(tuple(selector), tuple(stages))
