"""The worker's metrics and the README's metrics table hold exactly the catalogue's entries."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client import CollectorRegistry

from workers.metrics.catalog import METRICS, sample_names
from workers.metrics.registry import build, worker_entries

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_worker_registry_exports_exactly_the_catalogues_worker_entries() -> None:
    registry = CollectorRegistry()
    metrics = build(registry)
    for entry in worker_entries():  # one series of each, so that its labels show
        metric = metrics[entry.name]
        child = metric.labels(*("x" for _ in entry.labels)) if entry.labels else metric
        child.observe(1.0) if entry.kind == "histogram" else child.inc()

    families = {f.name: f for f in registry.collect()}

    expected = {m.name: m for m in METRICS if m.source == "worker"}
    assert sorted(families) == sorted(expected)
    for name, family in families.items():
        entry = expected[name]
        assert (family.type, family.documentation) == (entry.kind, entry.help), name
        exposed = {s.name for s in family.samples if not s.name.endswith("_created")}
        assert exposed == set(sample_names(entry)), name
        for sample in family.samples:
            assert set(sample.labels) - {"le"} == set(entry.labels), (name, sample.labels)


def test_no_worker_metric_is_made_outside_the_catalogue() -> None:
    assert {m.name for m in worker_entries()} == {m.name for m in METRICS if m.source == "worker"}
    assert len(worker_entries()) == len(set(m.name for m in worker_entries()))


def metrics_table() -> list[tuple[str, str, tuple[str, ...], str]]:
    """(name, type, labels, from) of each row of the README's ``### Metrics`` table."""
    text = README.read_text()
    section = text.split("\n### Metrics\n", 1)[1].split("\n### ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0].startswith("`workers_"):
            labels = tuple(re.findall(r"`([a-z_]+)`", cells[2]))
            rows.append((cells[0].strip("`"), cells[1], labels, cells[3]))
    return rows


def test_the_readme_metrics_table_lists_exactly_the_catalogue() -> None:
    rows = metrics_table()

    assert [r[0] for r in rows] == [m.name for m in METRICS]  # every one, once, in its order
    assert rows == [(m.name, m.kind, m.labels, m.source) for m in METRICS]


def test_the_monitoring_section_comes_right_before_performance() -> None:
    headings = [line for line in README.read_text().splitlines() if line.startswith("## ")]

    assert headings[headings.index("## Monitoring") + 1] == "## Performance"
