"""Prometheus metrics of a training process: a Lightning callback with its own exporter and Pushgateway push.

Every training process (one per GPU under DDP) serves ``/metrics`` over HTTP with prometheus_client on
``metrics.port + local rank`` (``metrics.port: 0`` picks an ephemeral port, logged at start). When
``metrics.pushgateway`` is set, the final values are also pushed there when training ends and when it fails
(``on_exception``), so a finished or crashed run stays visible after its pod is gone.

Metric names follow the Prometheus conventions (https://prometheus.io/docs/practices/naming/): prefix
``evdet_train_``, base units (seconds, bytes), ``_total`` for counters. Every series carries the labels
``experiment``, ``run_id`` and ``rank`` (global rank).

=============================================  =========  ============================================================
name                                           type       meaning
=============================================  =========  ============================================================
``evdet_train_steps_total``                    counter    training batches processed (one truncated-BPTT step each)
``evdet_train_samples_total``                  counter    sequences processed (batch size B per step)
``evdet_train_frames_total``                   counter    stacked histograms processed (B x sequence length L)
``evdet_train_step_duration_seconds``          histogram  batch start to batch end (forward, backward, optimiser)
``evdet_train_data_wait_seconds``              histogram  end of one batch to the start of the next (data loading)
``evdet_train_iterations_per_second``          gauge      steps/s over the last ``THROUGHPUT_WINDOW`` steps
``evdet_train_samples_per_second``             gauge      samples/s over the same window
``evdet_train_frames_per_second``              gauge      frames/s over the same window
``evdet_train_loss``                           gauge      latest logged loss, label ``component`` (``loss``, ...)
``evdet_train_learning_rate``                  gauge      lr of the latest step, label ``param_group``
``evdet_train_gpu_memory_allocated_bytes``     gauge      ``torch.cuda.memory_allocated``, label ``device``
``evdet_train_gpu_memory_reserved_bytes``      gauge      ``torch.cuda.memory_reserved``, label ``device``
``evdet_train_gpu_memory_peak_bytes``          gauge      ``torch.cuda.max_memory_allocated``, label ``device``
``evdet_train_process_resident_memory_bytes``  gauge      resident set size of the process
``evdet_train_val_ap``                         gauge      COCO AP of the latest validation (``val_AP``)
``evdet_train_failed``                         gauge      1 after the run stopped with an exception, else 0
=============================================  =========  ============================================================

When the model is not on a CUDA device the three GPU gauges are still exported, with ``device="none"`` and value 0,
so dashboards show a flat line instead of "no data" and a CPU run (tests, the local pipeline) exercises every
dashboard query.

Data wait is measured as the loop sees it: Lightning prefetches one batch ahead, so the gap after batch i covers
fetching a later batch. The gap after a validation run is measured from the validation's end.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import resource
import threading
import time
from collections import deque
from typing import Any
from urllib.error import URLError

import lightning as L
import torch
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, push_to_gateway, start_http_server

__all__ = [
    "PrometheusMetricsCallback",
    "MetricsPortInUseError",
    "build_metrics_callbacks",
    "batch_shape",
    "resident_bytes",
    "METRIC_PREFIX",
    "STEP_BUCKETS_S",
    "THROUGHPUT_WINDOW",
]

log = logging.getLogger(__name__)

#: Prefix of every metric name.
METRIC_PREFIX = "evdet_train_"
#: Histogram buckets (seconds) for step duration and data wait: 5 ms .. 60 s, roughly x2.5 per bucket.
STEP_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
#: Steps in the sliding window of the throughput gauges.
THROUGHPUT_WINDOW = 20
_LABELS = ("experiment", "run_id", "rank")
_GATEWAY = re.compile(r"^(https?://)?[A-Za-z0-9.\-\[\]:]+(:\d+)?/?$")


class MetricsPortInUseError(OSError):
    """The exporter's port is taken by another process; the message names the port and ``metrics.port``."""


class ScrapeCounter:
    """A collector that yields no metric and counts how often the registry is collected, i.e. scraped.

    Lets the exporter linger after training until a scraper has collected the final values (a condition, not a
    guess of the scrape interval).
    """

    def __init__(self) -> None:
        self.count = 0
        self._changed = threading.Condition()

    def collect(self):  # noqa: D102 (prometheus_client collector protocol)
        with self._changed:
            self.count += 1
            self._changed.notify_all()
        return iter(())

    def describe(self):  # noqa: D102 (an empty description keeps auto_describe from calling collect)
        return iter(())

    def wait_for_scrapes(self, scrapes: int, timeout_s: float) -> int:
        """Block until ``scrapes`` more collections happened or ``timeout_s`` passed; returns how many happened."""
        with self._changed:
            start = self.count
            self._changed.wait_for(lambda: self.count - start >= scrapes, timeout=timeout_s)
            return self.count - start


class PrometheusMetricsCallback(L.Callback):
    """Serve the training metrics listed in the module docstring and push their final values to a Pushgateway.

    The exporter starts in ``setup`` of a ``fit`` (when the local rank is known) and stops in ``teardown`` or
    ``on_exception``. Each callback owns a :class:`prometheus_client.CollectorRegistry`, so several runs in one
    process do not collide.

    Args:
        experiment: value of the ``experiment`` label (``experiment_name``).
        run_id: value of the ``run_id`` label.
        port: base TCP port (``metrics.port``); the process listens on ``port + local_rank``. 0: ephemeral port.
        addr: listen address (``metrics.addr``): ``127.0.0.1`` (default, loopback only) or ``0.0.0.0`` in a pod that
            Prometheus scrapes from outside.
        pushgateway: ``host:port`` or ``http(s)://host:port`` of a Pushgateway (``metrics.pushgateway``), or None.
        job: Pushgateway job name (``metrics.job``); the grouping key is experiment, run_id and rank.
        linger_s: the longest time (s) the exporter stays up after training ends (``metrics.linger_s``), so a
            scraper with a long interval still collects the final values; >= 0.
        linger_scrapes: the exporter stops lingering as soon as it has been scraped this many times after training
            ended (``metrics.linger_scrapes``); 0 lingers the full ``linger_s``.

    Raises:
        ValueError: port outside 0..65535, negative ``linger_s`` or ``linger_scrapes``, empty labels or a malformed
            pushgateway address (each message names the ``metrics.*`` key).
        MetricsPortInUseError: (at ``setup``) the port is in use; names the port and ``metrics.port``.
    """

    def __init__(self, experiment: str, run_id: str, port: int = 8000, addr: str = "127.0.0.1",
                 pushgateway: str | None = None, job: str = "evdet-train", linger_s: float = 0.0,
                 linger_scrapes: int = 0) -> None:
        if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
            raise ValueError(f"metrics.port: expected an integer in 0..65535 (0 = ephemeral), got {port!r}")
        if linger_s < 0:
            raise ValueError(f"metrics.linger_s: expected seconds >= 0, got {linger_s!r}")
        if isinstance(linger_scrapes, bool) or not isinstance(linger_scrapes, int) or linger_scrapes < 0:
            raise ValueError(f"metrics.linger_scrapes: expected an integer >= 0, got {linger_scrapes!r}")
        if pushgateway is not None and not _GATEWAY.match(str(pushgateway)):
            raise ValueError(f"metrics.pushgateway: expected host:port or http(s)://host:port, got {pushgateway!r}")
        if not experiment or not run_id:
            raise ValueError(f"experiment_name and run_id must be non-empty, got {experiment!r}, {run_id!r}")
        if not job:
            raise ValueError("metrics.job: expected a non-empty Pushgateway job name")
        self.experiment, self.run_id = str(experiment), str(run_id)
        self.base_port, self.addr = port, addr
        self.pushgateway = str(pushgateway) if pushgateway else None
        self.job, self.linger_s, self.linger_scrapes = job, float(linger_s), int(linger_scrapes)
        self.registry = CollectorRegistry(auto_describe=True)
        self.scrapes = ScrapeCounter()
        self.registry.register(self.scrapes)
        self.port: int | None = None  # bound port once the exporter runs
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._labels: dict[str, str] = {}
        self._last_end: float | None = None
        self._batch_start: float | None = None
        self._window: deque[tuple[float, int, int]] = deque(maxlen=THROUGHPUT_WINDOW + 1)
        self._pushed = False
        self._define_metrics()

    # ---------------------------------------------------------------------------------------------- metrics
    def _define_metrics(self) -> None:
        p, r, lab = METRIC_PREFIX, self.registry, _LABELS
        self.steps = Counter(f"{p}steps", "Training batches processed.", lab, registry=r)
        self.samples = Counter(f"{p}samples", "Sequences processed (batch size per step).", lab, registry=r)
        self.frames = Counter(f"{p}frames", "Stacked histograms processed (batch x sequence length).", lab, registry=r)
        self.step_duration = Histogram(f"{p}step_duration_seconds", "Wall time of one training batch.", lab,
                                       registry=r, buckets=STEP_BUCKETS_S)
        self.data_wait = Histogram(f"{p}data_wait_seconds", "Wait between the end of a batch and the next start.",
                                   lab, registry=r, buckets=STEP_BUCKETS_S)
        self.it_per_s = Gauge(f"{p}iterations_per_second", "Steps per second (sliding window).", lab, registry=r)
        self.samples_per_s = Gauge(f"{p}samples_per_second", "Samples per second (sliding window).", lab, registry=r)
        self.frames_per_s = Gauge(f"{p}frames_per_second", "Frames per second (sliding window).", lab, registry=r)
        self.loss = Gauge(f"{p}loss", "Latest logged training loss by component.", (*lab, "component"), registry=r)
        self.lr = Gauge(f"{p}learning_rate", "Learning rate by optimiser parameter group.", (*lab, "param_group"),
                        registry=r)
        self.gpu_allocated = Gauge(f"{p}gpu_memory_allocated_bytes", "CUDA memory allocated by tensors.",
                                   (*lab, "device"), registry=r)
        self.gpu_reserved = Gauge(f"{p}gpu_memory_reserved_bytes", "CUDA memory reserved by the caching allocator.",
                                  (*lab, "device"), registry=r)
        self.gpu_peak = Gauge(f"{p}gpu_memory_peak_bytes", "Peak CUDA memory allocated by tensors.",
                              (*lab, "device"), registry=r)
        self.rss = Gauge(f"{p}process_resident_memory_bytes", "Resident set size of the training process.", lab,
                         registry=r)
        self.val_ap = Gauge(f"{p}val_ap", "COCO AP of the latest validation.", lab, registry=r)
        self.failed = Gauge(f"{p}failed", "1 when the run stopped with an exception.", lab, registry=r)

    def _init_series(self) -> None:
        """Create the unlabelled-by-value series at 0 so every metric exists from the first scrape."""
        for metric in (self.steps, self.samples, self.frames, self.step_duration, self.data_wait, self.it_per_s,
                       self.samples_per_s, self.frames_per_s, self.rss, self.failed):
            metric.labels(**self._labels)
        self.failed.labels(**self._labels).set(0)
        self._update_memory(None)

    # ----------------------------------------------------------------------------------------------- server
    def start_server(self, local_rank: int, global_rank: int) -> int:
        """Start the HTTP exporter on ``port + local_rank`` (or an ephemeral port); returns the bound port.

        Raises:
            MetricsPortInUseError: the port is in use (message names the port and ``metrics.port``).
        """
        if self._server is not None:
            return int(self.port)  # type: ignore[arg-type]
        self._labels = {"experiment": self.experiment, "run_id": self.run_id, "rank": str(global_rank)}
        self._init_series()
        port = self.base_port + local_rank if self.base_port else 0
        try:
            self._server, self._thread = start_http_server(port, addr=self.addr, registry=self.registry)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise MetricsPortInUseError(
                    errno.EADDRINUSE,
                    f"Prometheus exporter: port {port} on {self.addr} is already in use (metrics.port={self.base_port}"
                    f" + local rank {local_rank}); set metrics.port to a free port, or 0 for an ephemeral one",
                ) from None
            raise
        self.port = int(self._server.server_port)
        log.info("Prometheus metrics of rank %s at http://%s:%d/metrics", global_rank, self.addr, self.port)
        return self.port

    def stop_server(self) -> None:
        """Shut the exporter down (idempotent)."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def push(self) -> bool:
        """Push every metric to ``pushgateway`` (grouping key experiment, run_id, rank); False when unset or failed.

        A failed push is logged as a warning naming the gateway and ``metrics.pushgateway``; it does not raise, so
        an unreachable gateway never turns a finished training into a failed one or hides the original exception.
        """
        if not self.pushgateway or not self._labels:
            return False
        try:
            push_to_gateway(self.pushgateway, job=self.job, registry=self.registry, grouping_key=self._labels,
                            timeout=10)
        except (OSError, URLError) as exc:
            log.warning("metrics.pushgateway=%s: push failed: %s", self.pushgateway, exc)
            return False
        self._pushed = True
        return True

    # -------------------------------------------------------------------------------------------- updates
    def _update_memory(self, pl_module: L.LightningModule | None) -> None:
        self.rss.labels(**self._labels).set(resident_bytes())
        device = getattr(pl_module, "device", None)
        if device is not None and device.type == "cuda":
            name = str(device)
            self.gpu_allocated.labels(**self._labels, device=name).set(torch.cuda.memory_allocated(device))
            self.gpu_reserved.labels(**self._labels, device=name).set(torch.cuda.memory_reserved(device))
            self.gpu_peak.labels(**self._labels, device=name).set(torch.cuda.max_memory_allocated(device))
        else:
            for gauge in (self.gpu_allocated, self.gpu_reserved, self.gpu_peak):
                gauge.labels(**self._labels, device="none").set(0)

    def _update_losses(self, trainer: L.Trainer) -> None:
        """Loss gauges from the logged ``train/loss*`` values (Lightning refreshes them after ``on_train_batch_end``,
        so at batch end they hold the previous step's values; ``on_train_end`` publishes the last step's)."""
        for key, value in trainer.callback_metrics.items():
            if key.startswith("train/loss"):
                self.loss.labels(**self._labels, component=key.removeprefix("train/")).set(float(value))

    def _update_lr(self, trainer: L.Trainer) -> None:
        """Learning rate of each parameter group of the first optimiser: read at batch start, it is the lr the step
        uses (Lightning steps the scheduler before ``on_train_batch_end``)."""
        for opt in trainer.optimizers[:1]:
            for i, group in enumerate(opt.param_groups):
                self.lr.labels(**self._labels, param_group=str(i)).set(float(group["lr"]))

    # ------------------------------------------------------------------------------------------------ hooks
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":
            self.start_server(trainer.local_rank, trainer.global_rank)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._last_end = time.perf_counter()

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        now = time.perf_counter()
        if self._last_end is not None:
            self.data_wait.labels(**self._labels).observe(max(now - self._last_end, 0.0))
        self._batch_start = now
        self._update_lr(trainer)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        now = time.perf_counter()
        b, seq_len = batch_shape(batch)
        if self._batch_start is not None:
            self.step_duration.labels(**self._labels).observe(now - self._batch_start)
        self.steps.labels(**self._labels).inc()
        self.samples.labels(**self._labels).inc(b)
        self.frames.labels(**self._labels).inc(b * seq_len)
        self._window.append((now, b, b * seq_len))
        if len(self._window) > 1:  # rate over the window: steps after its first entry / time since that entry
            recent = list(self._window)[1:]
            span = now - self._window[0][0]
            steps, samples, frames = len(recent), sum(r[1] for r in recent), sum(r[2] for r in recent)
        else:  # first step: its own duration
            span = now - self._batch_start if self._batch_start is not None else 0.0
            steps, samples, frames = 1, b, b * seq_len
        if span > 0:
            self.it_per_s.labels(**self._labels).set(steps / span)
            self.samples_per_s.labels(**self._labels).set(samples / span)
            self.frames_per_s.labels(**self._labels).set(frames / span)
        self._update_losses(trainer)
        self._update_memory(pl_module)
        self._last_end = time.perf_counter()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        value = trainer.callback_metrics.get("val_AP")
        if value is not None and not trainer.sanity_checking:
            self.val_ap.labels(**self._labels).set(float(value))
        self._update_memory(pl_module)
        self._window.clear()  # validation time is not training throughput
        self._last_end = time.perf_counter()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._update_losses(trainer)
        self._update_memory(pl_module)
        self.push()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if self._labels:
            self.failed.labels(**self._labels).set(1)
            self._update_memory(pl_module)
            self.push()
        self.stop_server()

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        if self._server is not None and self.linger_s > 0:
            if self.linger_scrapes > 0:
                self.scrapes.wait_for_scrapes(self.linger_scrapes, self.linger_s)
            else:
                time.sleep(self.linger_s)
        self.stop_server()


def batch_shape(batch: Any) -> tuple[int, int]:
    """(batch size B, sequence length L) of a training batch: the first two dims of ``batch["representation"]``.

    Raises:
        ValueError: ``batch`` is not a dict holding a ``representation`` tensor of shape (B, L, C, H, W).
    """
    rep = batch.get("representation") if isinstance(batch, dict) else None
    if not isinstance(rep, torch.Tensor) or rep.dim() != 5:
        got = tuple(rep.shape) if isinstance(rep, torch.Tensor) else type(rep if isinstance(batch, dict) else batch)
        raise ValueError(f"batch['representation']: expected a (B, L, C, H, W) tensor, got {got}")
    return int(rep.shape[0]), int(rep.shape[1])


def resident_bytes() -> int:
    """Resident set size of this process in bytes (``/proc/self/statm``; peak RSS from getrusage elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # Linux-style KiB; macOS over-reports


def build_metrics_callbacks(config: dict[str, Any]) -> list[PrometheusMetricsCallback]:
    """The exporter callback for a resolved training config (``[]`` when ``metrics.enabled`` is false).

    Reads ``experiment_name``, ``run_id`` and ``metrics.{enabled, addr, port, pushgateway, job, linger_s,
    linger_scrapes}``.

    Raises:
        KeyError: the config has no ``metrics`` node (names the key).
        ValueError: as :class:`PrometheusMetricsCallback`.
    """
    if "metrics" not in config:
        raise KeyError("metrics: the training config has no 'metrics' node (conf/train.yaml)")
    m = config["metrics"]
    if not m.get("enabled", False):
        return []
    return [PrometheusMetricsCallback(
        experiment=str(config["experiment_name"]), run_id=str(config["run_id"]), port=m.get("port", 8000),
        addr=str(m.get("addr", "127.0.0.1")), pushgateway=m.get("pushgateway"), job=str(m.get("job", "evdet-train")),
        linger_s=float(m.get("linger_s", 0.0)), linger_scrapes=int(m.get("linger_scrapes", 0)),
    )]
