"""Fixtures: a real Prometheus and Pushgateway on free 127.0.0.1 ports, and a short training run they collect.

The binaries come from the Debian packages ``prometheus`` and ``prometheus-pushgateway`` (installed by ``.ci/run``);
there is no systemd, so the fixtures start them with ``--config.file`` / ``--storage.tsdb.path`` /
``--web.listen-address`` and kill them at the end of the session.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from local_servers import free_port, stop_process

#: Scrape interval of the test Prometheus (seconds).
SCRAPE_INTERVAL_S = 1
#: Job name of the direct scrape of the training process' exporter.
EXPORTER_JOB = "evdet-exporter"
#: Training steps of the scraped run; the exporter lingers until Prometheus has scraped the final values
#: LINGER_SCRAPES times (a condition; LINGER_S is only the upper bound, never reached when Prometheus runs).
RUN_STEPS = 8
LINGER_S = 120.0
LINGER_SCRAPES = 3
#: Overrides that make a short training take seconds on 2 CPU cores (as tests/conftest.py TINY_TRAINING).
RUN_OVERRIDES = [
    "+experiment=plain_lstm_640x360_baseline", "dataset=etram", "profile=local", "dataset.height=90",
    "dataset.width=160", "dataset.evaluation.min_box_diag_px=16", "dataset.evaluation.min_box_side_px=4",
    f"training.max_steps={RUN_STEPS}", "validation.val_check_interval=4", "validation.limit_val_batches=1",
    "training.log_every_n_steps=1", "training.lr_scheduler.pct_start=0.3", "checkpoint.save_top_k=0",
    "experiment_name=obs_test",
]


def http_get(url: str, timeout: float = 5.0) -> bytes:
    """Body of a GET request; raises urllib's errors on failure."""
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.read()


def _binary(name: str, package: str) -> str:
    path = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
    if path is None:
        pytest.fail(f"{name} not found: install the Debian package {package} (.ci/run does)")
    return path


def _wait_ready(url: str, proc: subprocess.Popen, log: Path, timeout_s: float = 180.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{url}: process exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            http_get(url, timeout=1.0)
            return
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"{url} not ready after {timeout_s} s:\n{log.read_text()[-3000:]}")


@dataclass
class PromServer:
    """A running Prometheus: base ``url`` and the port its ``evdet-exporter`` job scrapes (``exporter_port``)."""

    url: str
    exporter_port: int

    def api(self, path: str, **params: str) -> dict:
        """``GET /api/v1/<path>`` with query parameters; returns ``data``; fails the test on an API error."""
        query = urllib.parse.urlencode(params, doseq=True)
        body = json.loads(http_get(f"{self.url}/api/v1/{path}?{query}"))
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str, at: float) -> list[dict]:
        """Instant query ``expr`` evaluated at unix time ``at``; returns the result vector."""
        return self.api("query", query=expr, time=f"{at:.3f}")["result"]


@pytest.fixture(scope="session")
def pushgateway(tmp_path_factory) -> str:
    """A Pushgateway on a free 127.0.0.1 port; yields its base URL."""
    binary = _binary("prometheus-pushgateway", "prometheus-pushgateway")
    port = free_port()
    log = tmp_path_factory.mktemp("pushgateway") / "pushgateway.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([binary, f"--web.listen-address=127.0.0.1:{port}"], stdout=out,
                                stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(f"{url}/-/ready", proc, log)
        yield url
    finally:
        stop_process(proc)


@pytest.fixture(scope="session")
def prometheus(tmp_path_factory, pushgateway) -> PromServer:
    """Prometheus scraping every 1 s: job ``evdet-exporter`` (a training exporter on a port chosen now) and job
    ``pushgateway`` (``honor_labels: true``, so pushed series keep their job and labels)."""
    binary = _binary("prometheus", "prometheus")
    base = tmp_path_factory.mktemp("prometheus")
    port, exporter_port = free_port(), free_port()
    config = {
        "global": {"scrape_interval": f"{SCRAPE_INTERVAL_S}s", "evaluation_interval": f"{SCRAPE_INTERVAL_S}s"},
        "scrape_configs": [
            {"job_name": EXPORTER_JOB, "static_configs": [{"targets": [f"127.0.0.1:{exporter_port}"]}]},
            {"job_name": "pushgateway", "honor_labels": True,
             "static_configs": [{"targets": [pushgateway.removeprefix("http://")]}]},
        ],
    }
    (base / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
    log = base / "prometheus.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [binary, f"--config.file={base / 'prometheus.yml'}", f"--storage.tsdb.path={base / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=out, stderr=subprocess.STDOUT, cwd=base,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(f"{url}/-/ready", proc, log)
        yield PromServer(url=url, exporter_port=exporter_port)
    finally:
        stop_process(proc)


def _target_health(prom: PromServer) -> str | None:
    for target in prom.api("targets")["activeTargets"]:
        if target["labels"].get("job") == EXPORTER_JOB:
            return target["health"]
    return None


@pytest.fixture(scope="session")
def scraped_run(tiny_shards, prometheus, pushgateway, tmp_path_factory) -> dict:
    """A short training run (``run_training``) exporting on the port Prometheus scrapes and pushing to the
    Pushgateway at the end. Polls ``/api/v1/targets`` until the exporter target is up while the run trains.

    The dashboards show rates over 30 s, which need two scrapes with different step counts. Whether a run of
    ``RUN_STEPS`` steps spans two scrapes depends on the machine, so that is checked (a condition): when every step
    fell between the same two scrapes, the run is repeated with 4x the steps (at most 3 times).

    Returns: ``labels`` (experiment, run_id, rank), ``steps`` (training steps of the run), ``at`` (unix time at which
    the final values are in Prometheus and the exporter was still up), ``summary`` (run.json), ``config``.
    """
    from evdet.model.config import compose_config, to_container
    from evdet.model.training.train import run_training

    for attempt in range(3):
        steps, run_id = RUN_STEPS * 4 ** attempt, f"scraped{attempt}"
        out = tmp_path_factory.mktemp("scraped_run")
        cfg = compose_config([
            *RUN_OVERRIDES, f"training.max_steps={steps}", f"run_id={run_id}", f"dataset.path={tiny_shards}",
            f"output.dir={out}", f"metrics.port={prometheus.exporter_port}", "metrics.addr=127.0.0.1",
            f"metrics.pushgateway={pushgateway}", f"metrics.linger_s={LINGER_S}",
            f"metrics.linger_scrapes={LINGER_SCRAPES}",
        ])
        result: dict = {}

        def train() -> None:
            try:
                result["summary"] = run_training(cfg)
            except BaseException as exc:  # re-raised in the test thread
                result["error"] = exc

        thread = threading.Thread(target=train, name="scraped-training")
        thread.start()
        up_seen = False
        while thread.is_alive():
            if not up_seen and _target_health(prometheus) == "up":
                up_seen = True
            time.sleep(0.25)
        finished = time.time()
        thread.join()
        if "error" in result:
            raise result["error"]
        assert up_seen, "the exporter target never became 'up' in /api/v1/targets while the run trained"
        # The exporter stopped at `finished`, after Prometheus had scraped the final values LINGER_SCRAPES times;
        # one scrape interval earlier they are in the database and no staleness marker exists yet.
        at = finished - SCRAPE_INTERVAL_S
        selector = f'job="{EXPORTER_JOB}",run_id="{run_id}"'
        changes = prometheus.query(f"changes(evdet_train_step_duration_seconds_count{{{selector}}}[30s])", at)
        if changes and float(changes[0]["value"][1]) > 0:
            break
    else:
        pytest.fail(f"the training steps never spanned two Prometheus scrapes ({steps} steps, run {run_id})")
    return {
        "labels": {"experiment": "obs_test", "run_id": run_id, "rank": "0"},
        "steps": steps,
        "at": at,
        "summary": result["summary"],
        "config": to_container(cfg),
    }
