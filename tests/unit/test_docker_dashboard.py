"""The Grafana dashboard of the Docker stack (``docker/grafana/dashboards/workers.json``) queries
only metrics of the catalogue (``workers.metrics.catalog``), each as its kind allows and by labels
it has, shows every one of them, and reads from the provisioned Prometheus data source."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml

from tests.unit.docker_stack import DOCKER
from workers.metrics.catalog import BY_NAME, METRICS, Metric, sample_names

DASHBOARD = DOCKER / "grafana" / "dashboards" / "workers.json"
DATASOURCES = DOCKER / "grafana" / "provisioning" / "datasources"

# Catalogued metrics no panel shows, each with the reason: none so far.
NOT_ON_A_PANEL: dict[str, str] = {}
# Labels Prometheus adds to every series it scrapes (docker/prometheus/prometheus.yml).
TARGET_LABELS = {"job", "instance", "service"}
RATE_FUNCTIONS = {"rate", "irate", "increase"}

SAMPLES: dict[str, Metric] = {s: m for m in METRICS for s in sample_names(m)}

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_TOKEN = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*|\S")
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


@dataclass
class Use:
    """One metric name in a query: the functions around it (innermost last) and the labels
    its selector matches on."""

    sample: str
    enclosing: tuple[str, ...]
    selector: set[str]


@dataclass
class Query:
    uses: list[Use] = field(default_factory=list)
    groupings: list[set[str]] = field(default_factory=list)  # every by (...), in order


def analyse(expr: str) -> Query:
    """Enough of PromQL for these checks: metric names, the calls around them, selector labels
    and ``by``/``without`` groupings. String literals (label values) are skipped."""
    tokens = _TOKEN.findall(_STRING.sub('""', expr))
    query, stack, pending, i = Query(), [], "", 0
    while i < len(tokens):
        token, after = tokens[i], tokens[i + 1] if i + 1 < len(tokens) else ""
        if token in ("by", "without") and after == "(":
            end = tokens.index(")", i)
            query.groupings.append({t for t in tokens[i + 2 : end] if _IDENT.fullmatch(t)})
            i = end
        elif token == "(":
            stack.append(pending)
            pending = ""
        elif token == ")":
            stack.pop()
        elif _IDENT.fullmatch(token) and after == "(":
            stack.append(token)
            i += 1
        elif _IDENT.fullmatch(token) and after in ("by", "without"):
            pending = token  # an aggregation whose grouping comes before its argument
        elif token.startswith("workers_"):
            selector: set[str] = set()
            if after == "{":
                end = tokens.index("}", i)
                inside = tokens[i + 2 : end]
                selector = {
                    t
                    for t, nxt in zip(inside, inside[1:], strict=False)
                    if _IDENT.fullmatch(t) and nxt in "=!"
                }
                i = end
            query.uses.append(Use(token, tuple(n for n in stack if n), selector))
        i += 1
    assert not stack, f"unbalanced parentheses: {expr}"
    return query


def dashboard() -> dict[str, Any]:
    board: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return board


def panels() -> list[dict[str, Any]]:
    """Every panel, rows' collapsed panels included; rows themselves left out."""
    out = []
    for panel in dashboard()["panels"]:
        if panel["type"] == "row":
            out.extend(panel.get("panels", []))
        else:
            out.append(panel)
    return out


def targets() -> Iterator[tuple[str, dict[str, Any]]]:
    for panel in panels():
        for target in panel["targets"]:
            yield panel["title"], target


def variable_queries() -> Iterator[str]:
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            yield query["query"] if isinstance(query, dict) else query


def used_samples() -> dict[str, list[str]]:
    """Sample name -> titles of the panels that query it (template variables included)."""
    used: dict[str, list[str]] = {}
    for title, target in targets():
        for use in analyse(target["expr"]).uses:
            used.setdefault(use.sample, []).append(title)
    for query in variable_queries():
        for token in _TOKEN.findall(_STRING.sub('""', query)):
            if token.startswith("workers_"):
                used.setdefault(token, []).append("variables")
    return used


def test_the_query_reader_finds_names_calls_labels_and_groupings() -> None:
    query = analyse(
        'histogram_quantile(0.9, sum by (pipeline, le) (rate(workers_x_bucket{pipeline=~"a(b"'
        ', stage!="workers_not_a_metric"}[$__rate_interval]))) / sum(workers_y_total)'
    )

    assert [(u.sample, u.enclosing, u.selector) for u in query.uses] == [
        ("workers_x_bucket", ("histogram_quantile", "sum", "rate"), {"pipeline", "stage"}),
        ("workers_y_total", ("sum",), set()),
    ]
    assert query.groupings == [{"pipeline", "le"}]


def test_queries_name_only_catalogued_samples() -> None:
    unknown = {s: titles for s, titles in used_samples().items() if s not in SAMPLES}

    assert unknown == {}, "not a sample of workers/metrics/catalog.py"


def test_every_catalogued_metric_is_on_a_panel() -> None:
    shown = {SAMPLES[s].name for s in used_samples() if s in SAMPLES}
    missing = sorted(m.name for m in METRICS if m.name not in shown)

    assert missing == sorted(NOT_ON_A_PANEL)
    assert set(NOT_ON_A_PANEL) <= set(BY_NAME)


def test_each_kind_is_queried_as_promql_expects() -> None:
    problems = []
    for title, target in targets():
        query = analyse(target["expr"])
        for use in query.uses:
            metric = SAMPLES.get(use.sample)
            inner = use.enclosing[-1] if use.enclosing else ""
            if metric is None:
                continue
            if metric.kind == "gauge" and RATE_FUNCTIONS & set(use.enclosing):
                problems.append(f"{title}: a rate of the gauge {use.sample}")
            elif metric.kind != "gauge" and inner not in RATE_FUNCTIONS:
                problems.append(f"{title}: {use.sample} is cumulative: take its rate or increase")
            if use.sample.endswith("_bucket") and (
                "histogram_quantile" not in use.enclosing
                or not any("le" in g for g in query.groupings)
            ):
                problems.append(f"{title}: {use.sample} outside histogram_quantile by le")

    assert problems == []


def test_queries_filter_group_and_name_series_by_labels_they_have() -> None:
    problems = []
    for title, target in targets():
        query = analyse(target["expr"])
        catalogued = [SAMPLES[u.sample] for u in query.uses if u.sample in SAMPLES]
        labels = TARGET_LABELS | {label for m in catalogued for label in m.labels}
        if any(u.sample.endswith("_bucket") for u in query.uses):
            labels.add("le")
        for use in query.uses:
            if use.sample in SAMPLES and use.selector - labels:
                problems.append(f"{title}: {use.sample} has no label {use.selector - labels}")
        for grouping in query.groupings:
            if grouping - labels:
                problems.append(f"{title}: grouped by missing labels {grouping - labels}")
        # The legend can only name labels the result keeps: the outermost grouping's.
        kept = query.groupings[0] if query.groupings else labels
        legend = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", target.get("legendFormat", "")))
        if legend - kept:
            problems.append(f"{title}: the legend names {legend - kept}, not in the result")
    for query_text in variable_queries():
        m = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", query_text)
        assert m, f"variable query: {query_text}"
        assert m.group(2) in SAMPLES[m.group(1)].labels, query_text

    assert problems == []


def test_panels_read_the_provisioned_datasource() -> None:
    provisioned = [
        source
        for path in sorted(DATASOURCES.glob("*.y*ml"))
        for source in yaml.safe_load(path.read_text())["datasources"]
    ]
    assert [s["type"] for s in provisioned] == ["prometheus"]
    uid = provisioned[0]["uid"]
    board = dashboard()

    for panel in panels():
        assert panel["datasource"] == {"type": "prometheus", "uid": uid}, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == uid, panel["title"]
    for variable in board["templating"]["list"]:
        assert variable["datasource"]["uid"] == uid, variable["name"]


def test_the_dashboard_is_well_formed() -> None:
    board = dashboard()
    everything = board["panels"] + [p for row in board["panels"] for p in row.get("panels", [])]
    cells: dict[tuple[int, int], str] = {}

    assert board["uid"] and board["id"] is None  # provisioned: Grafana assigns the id
    ids = [p["id"] for p in everything]
    assert len(ids) == len(set(ids))
    for panel in everything:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]
    for panel in panels():
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert ref_ids and len(ref_ids) == len(set(ref_ids)), panel["title"]


@pytest.mark.parametrize(
    ("expr", "problem"),
    [
        ("workers_alerts_total", "cumulative"),
        ("rate(workers_lag_records[5m])", "a rate of the gauge"),
        ("sum by (pipeline) (rate(workers_commit_seconds_bucket[5m]))", "histogram_quantile"),
    ],
)
def test_the_kind_check_catches_misuse(
    monkeypatch: pytest.MonkeyPatch, expr: str, problem: str
) -> None:
    fake = [("a panel", {"expr": expr, "refId": "A", "legendFormat": ""})]
    monkeypatch.setattr(f"{__name__}.targets", lambda: iter(fake))

    with pytest.raises(AssertionError, match=problem):
        test_each_kind_is_queried_as_promql_expects()


@pytest.mark.parametrize(
    ("expr", "legend", "problem"),
    [
        ('sum(rate(workers_alerts_total{pipeline="x"}[5m]))', "", "has no label"),
        ("sum by (stage) (rate(workers_records_pulled_total[5m]))", "", "grouped by missing"),
        ("sum by (pipeline) (rate(workers_records_pulled_total[5m]))", "{{topic}}", "legend"),
    ],
)
def test_the_label_check_catches_misuse(
    monkeypatch: pytest.MonkeyPatch, expr: str, legend: str, problem: str
) -> None:
    fake = [("a panel", {"expr": expr, "refId": "A", "legendFormat": legend})]
    monkeypatch.setattr(f"{__name__}.targets", lambda: iter(fake))

    with pytest.raises(AssertionError, match=problem):
        test_queries_filter_group_and_name_series_by_labels_they_have()
