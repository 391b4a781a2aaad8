"""The Grafana dashboard reads only metrics that exist: every name its queries use is in
deploy/metrics.json, the engine's names are checked against a running vLLM's /metrics, and the
gateway's against a running gateway's /metrics."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.deploy.support import DASHBOARD_FILE, METRICS_FILE

HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
# Labels Prometheus adds itself, and a histogram's bucket bound.
IMPLICIT_LABELS = {"le", "instance", "job"}
SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{[^}]*\})?\s*\[")
BARE_SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}")
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
MATCHER_LABEL = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
KNOWN_NAME = re.compile(r"\b(tantra_[a-z0-9_]+|vllm:[a-z0-9_:]+)")


def contract() -> dict[str, dict[str, Any]]:
    metrics = json.loads(METRICS_FILE.read_text())
    return {**metrics["gateway"], **metrics["engine"]}


def queries() -> Iterator[tuple[str, str]]:
    """(panel title, PromQL) for every query of every panel, and the template variables'."""
    dashboard = json.loads(DASHBOARD_FILE.read_text())
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            yield f"${variable['name']}", query["query"] if isinstance(query, dict) else query


def base_name(name: str, metrics: dict[str, dict[str, Any]]) -> str:
    """The contract's name for a name a query uses (histogram_seconds_bucket -> histogram_seconds)."""
    if name in metrics:
        return name
    for suffix in HISTOGRAM_SUFFIXES:
        if name.endswith(suffix) and metrics.get(name.removesuffix(suffix), {}).get("type") == "histogram":
            return name.removesuffix(suffix)
    raise AssertionError(f"{name} is not in deploy/metrics.json")


def names_in(expr: str) -> set[str]:
    return (
        set(KNOWN_NAME.findall(expr))
        | {m.group(1) for m in BARE_SELECTOR.finditer(expr)}
        | {m.group(1) for m in SELECTOR.finditer(expr)}
    )


def test_every_query_names_a_metric_of_the_contract() -> None:
    metrics = contract()
    for title, expr in queries():
        used = names_in(expr)
        assert used, f"{title}: no metric in {expr}"
        for name in used:
            try:
                base_name(name, metrics)
            except AssertionError as exc:
                pytest.fail(f"panel {title!r}: {exc}")


def test_queries_group_and_filter_by_declared_labels() -> None:
    metrics = contract()
    for title, expr in queries():
        declared = set(IMPLICIT_LABELS)
        for name in names_in(expr):
            declared |= set(metrics[base_name(name, metrics)]["labels"])
        used = {
            label.strip() for group in GROUPING.findall(expr) for label in group.split(",") if label.strip()
        }
        for _, matchers in BARE_SELECTOR.findall(expr):
            used |= set(MATCHER_LABEL.findall(matchers))
        assert used <= declared, f"panel {title!r} uses undeclared labels {sorted(used - declared)}"


def test_dashboard_covers_the_contract_and_the_issue_topics() -> None:
    metrics = contract()
    used = {base_name(name, metrics) for _, expr in queries() for name in names_in(expr)}
    assert set(metrics) == used, f"in deploy/metrics.json but on no panel: {sorted(set(metrics) - used)}"
    titles = {title.lower() for title, _ in queries()}
    for topic in ("requests", "errors", "time to first token", "tokens per second", "rate-limit", "circuit"):
        assert any(topic in title for title in titles), topic


def test_dashboard_is_well_formed() -> None:
    dashboard = json.loads(DASHBOARD_FILE.read_text())
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            # One data source variable: the dashboard works with any Prometheus Grafana has.
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
            assert panel.get("description"), f"panel {panel['title']!r} says what it shows"
    assert dashboard["uid"] == "tantra-overview"


def test_contract_follows_prometheus_naming() -> None:
    metrics = json.loads(METRICS_FILE.read_text())
    for name, metric in metrics["gateway"].items():
        assert name.startswith("tantra_"), name
        assert (metric["type"] == "counter") == name.endswith("_total"), name
        if metric["type"] == "histogram":
            assert name.endswith("_seconds"), f"{name}: durations are histograms in seconds"
        assert metric["help"] and metric["labels"] is not None


def exported(text: str) -> dict[str, tuple[str, set[str]]]:
    """name -> (type, labels seen) from a /metrics page; counters by their `_total` name."""
    found: dict[str, tuple[str, set[str]]] = {}
    for family in text_string_to_metric_families(text):
        name = family.name + "_total" if family.type == "counter" else family.name
        labels = {label for sample in family.samples for label in sample.labels}
        found[name] = (family.type, labels - IMPLICIT_LABELS - {"quantile"})
    return found


def assert_exports(section: str, text: str) -> None:
    expected = json.loads(METRICS_FILE.read_text())[section]
    found = exported(text)
    missing = sorted(set(expected) - set(found))
    assert not missing, f"/metrics lacks {missing}"
    for name, metric in expected.items():
        kind, labels = found[name]
        assert kind == metric["type"], f"{name} is a {kind}, the dashboard expects a {metric['type']}"
        if labels:  # a labelled metric shows its labels once it has samples
            assert set(metric["labels"]) <= labels, f"{name} has labels {sorted(labels)}"


@pytest.mark.engine
def test_engine_exports_the_dashboard_metrics(engine_url: str, model: str) -> None:
    # One request first, so histograms and counters carry samples (and their labels).
    reply = httpx.post(
        engine_url + "/v1/completions",
        json={"model": model, "prompt": "Hello", "max_tokens": 2},
        timeout=120,
    )
    assert reply.status_code == 200, reply.text
    assert_exports("engine", httpx.get(engine_url + "/metrics", timeout=30).text)


@pytest.mark.engine
def test_gateway_exports_the_dashboard_metrics(gateway_url: str) -> None:
    response = httpx.get(gateway_url + "/metrics", timeout=30)
    # A gateway without /metrics leaves the dashboard blank: that is a failure, not an expected one.
    assert response.status_code == 200, f"GET /metrics: {response.status_code} {response.text}"
    assert_exports("gateway", response.text)
