"""The training exporter against a real Prometheus and Pushgateway: every metric scraped, final values pushed."""

from __future__ import annotations

import logging
import socket
import urllib.error

import lightning as L
import pytest
import torch
from prometheus_client.parser import text_string_to_metric_families

from evdet.model.mlops.prometheus_metrics import (
    MetricsPortInUseError,
    PrometheusMetricsCallback,
    batch_shape,
    build_metrics_callbacks,
)

from .conftest import EXPORTER_JOB, http_get

#: Every series the exporter must produce (histograms through their _bucket / _sum / _count series).
EXPORTED = [
    "evdet_train_steps_total", "evdet_train_samples_total", "evdet_train_frames_total",
    "evdet_train_step_duration_seconds_bucket", "evdet_train_step_duration_seconds_sum",
    "evdet_train_step_duration_seconds_count", "evdet_train_data_wait_seconds_bucket",
    "evdet_train_data_wait_seconds_sum", "evdet_train_data_wait_seconds_count",
    "evdet_train_iterations_per_second", "evdet_train_samples_per_second", "evdet_train_frames_per_second",
    "evdet_train_loss", "evdet_train_learning_rate", "evdet_train_gpu_memory_allocated_bytes",
    "evdet_train_gpu_memory_reserved_bytes", "evdet_train_gpu_memory_peak_bytes",
    "evdet_train_process_resident_memory_bytes", "evdet_train_val_ap", "evdet_train_failed",
]


def _selector(labels: dict[str, str], **extra: str) -> str:
    return ",".join(f'{k}="{v}"' for k, v in {**labels, **extra}.items())


def _value(prometheus, expr: str, at: float) -> float:
    result = prometheus.query(expr, at)
    assert len(result) == 1, (expr, result)
    return float(result[0]["value"][1])


def test_prometheus_scrapes_every_metric_of_a_training_run(scraped_run, prometheus):
    labels, at = scraped_run["labels"], scraped_run["at"]
    sel = _selector(labels, job=EXPORTER_JOB)
    for name in EXPORTED:
        assert prometheus.query(f"{name}{{{sel}}}", at), f"{name}: no data for {sel}"
    batch, seq_len = scraped_run["config"]["batch_size"]["train"], scraped_run["config"]["dataset"]["sequence_length"]
    steps = scraped_run["steps"]
    assert _value(prometheus, f"evdet_train_steps_total{{{sel}}}", at) == steps
    assert _value(prometheus, f"evdet_train_samples_total{{{sel}}}", at) == steps * batch
    assert _value(prometheus, f"evdet_train_frames_total{{{sel}}}", at) == steps * batch * seq_len
    assert _value(prometheus, f"evdet_train_step_duration_seconds_count{{{sel}}}", at) == steps
    assert _value(prometheus, f"evdet_train_iterations_per_second{{{sel}}}", at) > 0
    components = {r["metric"]["component"] for r in prometheus.query(f"evdet_train_loss{{{sel}}}", at)}
    assert {"loss", "loss_iou", "loss_obj", "loss_cls"} <= components
    assert 0.0 <= _value(prometheus, f"evdet_train_val_ap{{{sel}}}", at) <= 1.0
    assert _value(prometheus, f"evdet_train_learning_rate{{{sel}}}", at) > 0
    assert _value(prometheus, f"evdet_train_process_resident_memory_bytes{{{sel}}}", at) > 50e6
    if not torch.cuda.is_available():
        gpu = prometheus.query(f"evdet_train_gpu_memory_allocated_bytes{{{sel}}}", at)
        assert [r["metric"]["device"] for r in gpu] == ["none"] and float(gpu[0]["value"][1]) == 0.0


def test_pushgateway_holds_the_final_values(scraped_run, pushgateway, prometheus):
    labels = scraped_run["labels"]
    families = {f.name: f for f in text_string_to_metric_families(http_get(f"{pushgateway}/metrics").decode())}
    steps = [s for s in families["evdet_train_steps"].samples
             if s.name == "evdet_train_steps_total" and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(steps) == 1 and steps[0].value == scraped_run["steps"] and steps[0].labels["job"] == "evdet-train"
    failed = [s for s in families["evdet_train_failed"].samples if s.labels.get("run_id") == labels["run_id"]]
    assert [s.value for s in failed] == [0.0]
    # ... and Prometheus scraped them from the Pushgateway with the pushed job label (honor_labels).
    pushed = prometheus.query(f'evdet_train_steps_total{{{_selector(labels, job="evdet-train")}}}', scraped_run["at"])
    assert pushed and float(pushed[0]["value"][1]) == scraped_run["steps"]


class _SequenceModule(L.LightningModule):
    """Toy detector stand-in on batches shaped like the training batches; fails at step ``fail_at``."""

    def __init__(self, fail_at: int | None = None) -> None:
        super().__init__()
        self.layer = torch.nn.Conv2d(4, 1, 1)
        self.fail_at = fail_at

    def training_step(self, batch, batch_idx):
        if batch_idx == self.fail_at:
            raise RuntimeError("synthetic failure")
        loss = self.layer(batch["representation"].flatten(0, 1).float()).mean() ** 2
        self.log("train/loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)

    def train_dataloader(self):
        reps = torch.rand(6, 3, 4, 8, 8)  # 6 sequences, L=3 windows, 4 channels, 8x8 px
        data = [{"representation": reps[i]} for i in range(6)]
        return torch.utils.data.DataLoader(data, batch_size=2)


def _trainer(callback, steps: int) -> L.Trainer:
    return L.Trainer(max_steps=steps, accelerator="cpu", logger=False, enable_checkpointing=False,
                     enable_progress_bar=False, enable_model_summary=False, callbacks=[callback])


def test_failure_pushes_final_values_and_stops_the_exporter(pushgateway):
    callback = PrometheusMetricsCallback("obs_fail", "crashed", port=0, addr="127.0.0.1", pushgateway=pushgateway)
    with pytest.raises(RuntimeError, match="synthetic failure"):
        _trainer(callback, steps=3).fit(_SequenceModule(fail_at=2))
    text = http_get(f"{pushgateway}/metrics").decode()
    samples = {(s.name, s.labels.get("run_id")): s.value
               for f in text_string_to_metric_families(text) for s in f.samples}
    assert samples[("evdet_train_failed", "crashed")] == 1.0
    assert samples[("evdet_train_steps_total", "crashed")] == 2.0  # batches 0 and 1 finished
    assert samples[("evdet_train_frames_total", "crashed")] == 2 * 2 * 3
    with pytest.raises(urllib.error.URLError):
        http_get(f"http://127.0.0.1:{callback.port}/metrics", timeout=2)


def test_ephemeral_port_is_logged_and_runs_do_not_share_a_registry(caplog):
    first = PrometheusMetricsCallback("obs_a", "one", port=0, addr="127.0.0.1")
    second = PrometheusMetricsCallback("obs_a", "two", port=0, addr="127.0.0.1")
    with caplog.at_level(logging.INFO, logger="evdet.model.mlops.prometheus_metrics"):
        _trainer(first, steps=2).fit(_SequenceModule())
        _trainer(second, steps=1).fit(_SequenceModule())
    ports = [first.port, second.port]
    assert all(p and p > 0 for p in ports)
    for port in ports:
        assert f":{port}/metrics" in caplog.text
    assert first.registry.get_sample_value("evdet_train_steps_total",
                                           {"experiment": "obs_a", "run_id": "one", "rank": "0"}) == 2
    assert second.registry.get_sample_value("evdet_train_steps_total",
                                            {"experiment": "obs_a", "run_id": "one", "rank": "0"}) is None


def test_port_in_use_is_one_clear_error():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        callback = PrometheusMetricsCallback("obs_b", "busy", port=port, addr="127.0.0.1")
        with pytest.raises(MetricsPortInUseError, match=rf"port {port} .*metrics\.port"):
            callback.start_server(local_rank=0, global_rank=0)


def test_exporter_serves_labelled_metrics_until_stopped():
    callback = PrometheusMetricsCallback("obs_c", "live", port=0, addr="127.0.0.1")
    port = callback.start_server(local_rank=0, global_rank=0)
    try:
        text = http_get(f"http://127.0.0.1:{port}/metrics").decode()
        assert 'evdet_train_steps_total{experiment="obs_c",rank="0",run_id="live"} 0.0' in text
    finally:
        callback.stop_server()
    with pytest.raises(urllib.error.URLError):
        http_get(f"http://127.0.0.1:{port}/metrics", timeout=2)


def test_exporter_lingers_until_scraped_after_the_end():
    """teardown returns once the exporter was scraped linger_scrapes times, long before linger_s."""
    import threading

    callback = PrometheusMetricsCallback("obs_c", "linger", port=0, addr="127.0.0.1", linger_s=600.0,
                                         linger_scrapes=2)
    port = callback.start_server(local_rank=0, global_rank=0)
    done = threading.Event()
    thread = threading.Thread(target=lambda: (callback.teardown(None, None, "fit"), done.set()))
    thread.start()
    try:
        http_get(f"http://127.0.0.1:{port}/metrics")
        assert not done.wait(timeout=0.5), "teardown returned after one scrape"  # never true when correct
        http_get(f"http://127.0.0.1:{port}/metrics")
        assert done.wait(timeout=60), "teardown still lingering after two scrapes"
    finally:
        thread.join(timeout=60)
        callback.stop_server()
    with pytest.raises(urllib.error.URLError):
        http_get(f"http://127.0.0.1:{port}/metrics", timeout=2)


@pytest.mark.parametrize("kwargs, key", [
    ({"port": 70000}, "metrics.port"), ({"port": -1}, "metrics.port"), ({"port": "8000"}, "metrics.port"),
    ({"linger_s": -1.0}, "metrics.linger_s"), ({"pushgateway": "not a gateway!"}, "metrics.pushgateway"),
    ({"job": ""}, "metrics.job"), ({"linger_scrapes": -1}, "metrics.linger_scrapes"),
])
def test_bad_settings_name_their_key(kwargs, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        PrometheusMetricsCallback("exp", "run", **kwargs)


def test_config_builds_the_callback_or_nothing():
    base = {"experiment_name": "e", "run_id": "r"}
    metrics = {"enabled": True, "addr": "127.0.0.1", "port": 0, "pushgateway": None, "job": "j", "linger_s": 0}
    (callback,) = build_metrics_callbacks({**base, "metrics": metrics})
    assert callback.base_port == 0 and callback.job == "j"
    assert build_metrics_callbacks({**base, "metrics": {**metrics, "enabled": False}}) == []
    with pytest.raises(KeyError, match="metrics"):
        build_metrics_callbacks(base)


def test_batch_shape_needs_a_sequence_batch():
    assert batch_shape({"representation": torch.zeros(2, 5, 20, 4, 4, dtype=torch.uint8)}) == (2, 5)
    with pytest.raises(ValueError, match=r"batch\['representation'\]"):
        batch_shape({"representation": torch.zeros(2, 20, 4, 4)})
    with pytest.raises(ValueError, match=r"batch\['representation'\]"):
        batch_shape([torch.zeros(1)])
