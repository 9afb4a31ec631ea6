"""Typed Kubeflow Pipelines (v2) components of every evdet experiment pipeline.

Each component is a lightweight Python component that calls one of the packages' console scripts
(``evdet-data``, ``evdet-train``, ``evdet-model``, ``evdet-eval``, ``evdet-detect``) and records its outputs as typed
artifacts; all logic lives in the packages. The images already contain the packages and kfp
(``install_kfp_package=False``), so nothing is pip-installed at run time. On a laptop, ``kfp.local``'s
SubprocessRunner runs the same components in the current Python environment (``pipelines/run_local.py``).
"""

import os

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Model, Output

#: Container images per component; ``EVDET_IMAGE_REGISTRY`` / ``EVDET_IMAGE_TAG`` select them at compile time.
_REGISTRY = os.environ.get("EVDET_IMAGE_REGISTRY", "evdet")
_TAG = os.environ.get("EVDET_IMAGE_TAG", "latest")
DATA_IMAGE = f"{_REGISTRY}/evdet-data:{_TAG}"
MODEL_IMAGE = f"{_REGISTRY}/evdet-model:{_TAG}"
EVAL_IMAGE = f"{_REGISTRY}/evdet-eval:{_TAG}"


@dsl.component(base_image=DATA_IMAGE, install_kfp_package=False)
def preprocess(raw_data_uri: str, class_names: str, preprocess_args: list, shards: Output[Dataset]) -> str:
    """eTraM-layout dataset (train/ val/ test/ with <name>_td.h5 + <name>_bbox.npy) -> representation shards with
    the reference protocol (``evdet-data preprocess``; ``class_names`` names the raw label ids, ``preprocess_args``
    holds extra options such as ``--on-bad-events drop``)."""
    import subprocess

    cmd = ["evdet-data", "preprocess", raw_data_uri, "--output", shards.path, "--class-names", class_names,
           *[str(a) for a in preprocess_args]]
    result = subprocess.run(cmd, check=True, capture_output=True, text=True)
    print(result.stderr[-4000:])
    shards.metadata["source"] = raw_data_uri
    return result.stdout.strip().splitlines()[-1] if result.stdout.strip() else "{}"


@dsl.component(base_image=MODEL_IMAGE, install_kfp_package=False)
def train(
    experiment: str,
    overrides: list,
    run_id: str,
    store_uri: str,
    shards: Input[Dataset],
    model: Output[Model],
    pipeline_job_id: str = "",
    metrics_addr: str = "0.0.0.0",
) -> str:
    """``evdet-train +experiment=...`` on the shards; the run directory (checkpoints, config, run.json) is the
    Model artifact, and checkpoints are copied to the store when ``store_uri`` is set. The run_id is ``run_id`` when
    given, else ``pipeline_job_id`` (the pipeline run's id, ``dsl.PIPELINE_JOB_ID_PLACEHOLDER``): always explicit, so
    the store's run is this pipeline run's and never another's. ``metrics_addr`` is where the Prometheus exporter
    listens: all interfaces in a pod scraped by the cluster's Prometheus, loopback on a laptop (kfp.local)."""
    import json
    import os
    import subprocess

    cmd = [
        "evdet-train",
        f"+experiment={experiment}",
        f"dataset.path={shards.path}",
        f"output.dir={model.path}",
        f"metrics.addr={metrics_addr}",
        *[str(o) for o in overrides],
    ]
    if run_id or pipeline_job_id:
        cmd.append(f"run_id={run_id or pipeline_job_id}")
    if store_uri:
        cmd.append(f"output.store={store_uri}")
    subprocess.run(cmd, check=True)
    with open(os.path.join(model.path, "run.json")) as f:
        run = json.load(f)
    model.metadata.update({k: v for k, v in run.items() if v is not None})
    return json.dumps(run)


@dsl.component(base_image=EVAL_IMAGE, install_kfp_package=False)
def evaluate(
    split: str,
    store_uri: str,
    shards: Input[Dataset],
    model: Input[Model],
    metrics: Output[Metrics],
    results: Output[Artifact],
) -> str:
    """Detections at every object frame of one split (``evdet-model predict``: detections, ground truth and
    ``detections.json``), then the reference Prophesee protocol (``evdet-eval prophesee``; protocol, classes and
    frame size from ``detections.json``) written as ``experiment_results.json``, then the run report (``evdet-report
    run``: ``report/README.md``, ``confusion_matrices/``, ``plots/``); all copied to the store's run folder when set."""
    import json
    import os
    import subprocess

    with open(os.path.join(model.path, "run.json")) as f:
        run = json.load(f)
    split_dir = os.path.join(shards.path, split)
    detections = os.path.join(results.path, "detections")
    results_file = os.path.join(results.path, "experiment_results.json")
    subprocess.run(
        ["evdet-model", "predict", run["best_checkpoint"], split_dir, "--output", detections],
        check=True,
    )
    subprocess.run(
        ["evdet-eval", "prophesee", detections, detections, "--output", results_file,
         "--config", os.path.join(model.path, "config.yaml"), "--experiment", run["experiment"]],
        check=True,
    )
    report = os.path.join(results.path, "report")
    subprocess.run(["evdet-report", "run", model.path, "--results", results_file, "--split", split, "--output", report],
                   check=True)
    if store_uri:
        prefix = f"experiments/{run['experiment']}/{run['run_id']}"
        for name in ("experiment_results.json", "confusion_matrix.csv"):
            subprocess.run(["evdet-data", "store", "put", "--store", store_uri, os.path.join(results.path, name),
                            f"{prefix}/{name}"], check=True)
        subprocess.run(["evdet-data", "store", "put", "--store", store_uri, detections, f"{prefix}/detections/{split}"], check=True)
        for name in ("README.md", "confusion_matrices", "plots"):
            if os.path.exists(os.path.join(report, name)):
                subprocess.run(["evdet-data", "store", "put", "--store", store_uri, os.path.join(report, name),
                                f"{prefix}/{name}"], check=True)
    with open(results_file) as f:
        values = json.load(f)["metrics"]
    for key in ("AP", "AP_50", "AP_75", "AP_S", "AP_M", "AP_L"):
        if values.get(key) is not None:
            metrics.log_metric(key, float(values[key]))
    for kind in ("class_agnostic", "class_aware"):
        if values[kind].get("AP") is not None:
            metrics.log_metric(f"AP_{kind}", float(values[kind]["AP"]))
    return json.dumps({"headline": values["headline"],
                       **{k: values.get(k) for k in ("AP", "AP_50", "AP_75", "AP_S", "AP_M", "AP_L")}})


@dsl.component(base_image=MODEL_IMAGE, install_kfp_package=False)
def detect(recordings: list, store_uri: str, model: Input[Model], detections: Output[Artifact]) -> str:
    """``evdet-detect`` over raw recordings (any sensor size): Prophesee box arrays, PNG overlays and latency per
    50 ms window; copied to the store when set."""
    import json
    import os
    import subprocess

    with open(os.path.join(model.path, "run.json")) as f:
        run = json.load(f)
    result = subprocess.run(
        ["evdet-detect", run["best_checkpoint"], *[str(r) for r in recordings], "--output", detections.path],
        check=True, capture_output=True, text=True,
    )
    print(result.stdout)
    if store_uri:
        prefix = f"experiments/{run['experiment']}/{run['run_id']}"
        subprocess.run(["evdet-data", "store", "put", "--store", store_uri, detections.path, f"{prefix}/detect"], check=True)
    summary = json.loads(result.stdout.strip().splitlines()[-1])  # ONE JSON object (docs/cli.md)
    detections.metadata["detections"] = summary["detections"]
    return json.dumps(summary["recordings"])


@dsl.component(base_image=EVAL_IMAGE, install_kfp_package=False)
def compare_report(store_uri: str, experiments: list, baseline: str, reports_prefix: str, report: Output[Artifact],
                   page: Output[HTML]) -> str:
    """``evdet-report compare --store STORE --experiments A,B,C``: the newest run of each experiment side by side
    (``compare.md``, self-contained ``compare.html``, ``figures/``) as the ``report`` artifact, the HTML page also as
    the ``page`` artifact (shown by the Kubeflow UI), and copied to ``STORE/<reports_prefix>/compare-<UTC time>/``
    (``reports_prefix`` empty: not copied). ``baseline`` (empty: the first experiment) is passed as ``--baseline``."""
    import json
    import shutil
    import subprocess
    from datetime import datetime, timezone

    cmd = ["evdet-report", "compare", "--store", store_uri, "--experiments", ",".join(str(e) for e in experiments),
           "--output", report.path]
    if baseline:
        cmd += ["--baseline", baseline]
    result = subprocess.run(cmd, capture_output=True, text=True)
    print(result.stderr[-4000:])
    result.check_returncode()
    written = json.loads(result.stdout.strip().splitlines()[-1])
    shutil.copyfile(written["html"], page.path)
    if reports_prefix:
        key = f"{reports_prefix.strip('/')}/compare-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}"
        subprocess.run(["evdet-data", "store", "put", "--store", store_uri, report.path, key], check=True)
        written["store_uri"] = f"{store_uri.rstrip('/')}/{key}"
    report.metadata.update({"runs": written["runs"], "baseline": written["baseline"],
                            "store_uri": written.get("store_uri", "")})
    return json.dumps(written)
