"""Grafana dashboards as code: committed JSON equals the generator's output, provisioning agrees, and every panel's
PromQL returns data from the real Prometheus that scraped the test training run."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import yaml

GRAFANA = Path(__file__).resolve().parents[2] / "k8s" / "grafana"
DASHBOARDS = GRAFANA / "dashboards"


def _generator():
    spec = importlib.util.spec_from_file_location("evdet_grafana_dashboards", GRAFANA / "dashboards.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _committed() -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))}


def _targets(board: dict) -> list[tuple[str, str]]:
    return [(panel["title"], target["expr"]) for panel in board["panels"] for target in panel.get("targets", [])]


def test_committed_json_is_the_generators_output():
    gen = _generator()
    boards = gen.build_dashboards()
    assert sorted(boards) == sorted(p.name for p in DASHBOARDS.glob("*.json")), "run `make dashboards`"
    for name, board in boards.items():
        assert (DASHBOARDS / name).read_text() == gen.render(board), f"{name} is stale: run `make dashboards`"


def test_generator_writes_into_a_directory_only(tmp_path):
    gen = _generator()
    written = gen.write_dashboards(tmp_path / "out")
    assert sorted(p.name for p in written) == sorted(_committed())
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError, match="--out"):
        gen.write_dashboards(tmp_path / "file")


def test_dashboards_have_the_panels_and_variables_the_team_watches():
    boards = {b["title"]: b for b in _committed().values()}
    assert set(boards) == {"evdet / Training throughput", "evdet / Memory"}
    titles = {name: {p["title"] for p in b["panels"]} for name, b in boards.items()}
    assert {"Iterations per second", "Samples per second", "Frames per second", "Step time p50 / p95",
            "Data-wait share"} <= titles["evdet / Training throughput"]
    assert {"GPU memory allocated", "GPU memory reserved", "GPU memory peak",
            "Process resident memory"} <= titles["evdet / Memory"]
    exprs = " ".join(e for _, e in _targets(boards["evdet / Training throughput"]))
    assert "histogram_quantile(0.5," in exprs and "histogram_quantile(0.95," in exprs
    for board in boards.values():
        variables = {v["name"]: v for v in board["templating"]["list"]}
        assert set(variables) == {"experiment", "run"}
        assert all(v["type"] == "query" and v["query"].startswith("label_values(") for v in variables.values())
        for _, expr in _targets(board):
            assert '$experiment' in expr and '$run' in expr, expr


def test_provisioning_points_grafana_at_the_dashboards_datasource():
    gen = _generator()
    datasources = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yaml").read_text())
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus" and source["uid"] == gen.DATASOURCE_UID and source["url"]
    providers = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "evdet.yaml").read_text())
    (provider,) = providers["providers"]
    assert provider["type"] == "file" and provider["options"]["path"]
    for board in _committed().values():
        refs = [p["datasource"] for p in board["panels"]] + [v["datasource"] for v in board["templating"]["list"]]
        assert all(ref == {"type": "prometheus", "uid": gen.DATASOURCE_UID} for ref in refs)


def _substitute(expr: str, labels: dict[str, str]) -> str:
    # Grafana's $__rate_interval: at least 4 scrape intervals; the test run spans a few dozen 1 s scrapes.
    return (expr.replace("$__rate_interval", "30s").replace("$experiment", labels["experiment"])
            .replace("$run", labels["run_id"]))


@pytest.mark.parametrize("name", ["training-throughput.json", "memory.json"])
def test_every_panel_query_returns_data_for_the_training_run(name, scraped_run, prometheus):
    board = json.loads((DASHBOARDS / name).read_text())
    labels, at = scraped_run["labels"], scraped_run["at"]
    for title, expr in _targets(board):
        result = prometheus.query(_substitute(expr, labels), at)
        assert result, f"{name} / {title}: empty result for {_substitute(expr, labels)}"
        values = [float(r["value"][1]) for r in result]
        assert all(math.isfinite(v) and v >= 0 for v in values), (title, values)
        assert {r["metric"].get("run_id") for r in result} == {labels["run_id"]}, (title, result)


def test_template_variables_list_the_training_run(scraped_run, prometheus):
    labels = scraped_run["labels"]
    for board in _committed().values():
        for variable in board["templating"]["list"]:
            # label_values(<selector>, <label>) is Grafana's wrapper around the label-values API.
            selector, label = variable["query"].removeprefix("label_values(").removesuffix(")").rsplit(", ", 1)
            selector = selector.replace("$experiment", labels["experiment"])
            values = prometheus.api(f"label/{label}/values", **{"match[]": selector})
            assert labels[label] in values, (variable["name"], values)
