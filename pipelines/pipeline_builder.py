"""One builder for every experiment pipeline: preprocess -> train -> evaluate -> detect.

Each ``pipelines/<short>.py`` file is one line, ``<short> = build_pipeline("<experiment>")``, so the pipeline body
exists once and everything per experiment comes from its Hydra config ``conf/experiment/<experiment>.yaml``: the
pipeline's name (``evdet-<experiment_name>`` in lower case, ``_`` -> ``-``), its description (the config's
``description``) and the default ``class_names``. Parameters of the built pipeline (all overridable at submission):

- ``raw_data_uri``: eTraM-layout dataset directory (train/ val/ test/ with ``<name>_td.h5`` + ``<name>_bbox.npy``);
- ``overrides``: Hydra overrides appended to ``+experiment=<name>`` (e.g. ``["profile=local"]``);
- ``recordings``: raw recordings for the detect step;
- ``store_uri``: where checkpoints, ``experiment_results.json`` and detections are copied (empty: none);
- ``run_id``: the run's id (empty: the pipeline run's id, ``dsl.PIPELINE_JOB_ID_PLACEHOLDER``; a run_id whose run
  exists in the store is refused by ``evdet-train``);
- ``class_names``: names of the raw label ids (``evdet-data preprocess --class-names``); default: the
  experiment's ``dataset.class_names``, read from its Hydra config when the pipeline is built;
- ``preprocess_args``: extra ``evdet-data preprocess`` options (e.g. ``["--on-bad-events", "drop"]``);
- ``eval_split``: split evaluated after training;
- ``metrics_addr``: where the training exporter listens (``0.0.0.0`` in a cluster, so Prometheus scrapes the pod;
  ``127.0.0.1`` on a laptop).
"""

from kfp import dsl, kubernetes

from evdet.model.config import compose_config, experiment_slug

from pipeline_components import detect, evaluate, preprocess, train

__all__ = ["build_pipeline", "pipeline_identity", "LOCAL_DEFAULTS", "CLUSTER", "STEPS"]

#: Kubernetes settings of the pipeline's pods (must agree with k8s/: Secret name and keys, GPU node labels/taints).
CLUSTER = {
    # MinIO credentials: Secret key -> environment variable read by evdet.data's S3 store.
    "minio_secret": "evdet-minio",
    "minio_env": {
        "MINIO_ENDPOINT": "MINIO_ENDPOINT",
        "MINIO_ACCESS_KEY": "MINIO_ACCESS_KEY",
        "MINIO_SECRET_KEY": "MINIO_SECRET_KEY",
        "MINIO_SECURE": "MINIO_SECURE",
    },
    "gpu_resource": "nvidia.com/gpu",
    "gpus": 1,
    "gpu_node_selector": ("nvidia.com/gpu.present", "true"),
    "gpu_toleration": {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
    # /dev/shm for DataLoader workers (the container default of 64 MiB is far too small).
    "shm_size": "16Gi",
    "metrics_port": "8000",
    "train_cpu": "8",
    "train_memory": "48G",
}


def _storage_access(task: dsl.PipelineTask) -> dsl.PipelineTask:
    """MinIO credentials from the Secret as environment variables, and the label the NetworkPolicy admits."""
    kubernetes.use_secret_as_env(task, CLUSTER["minio_secret"], secret_key_to_env=CLUSTER["minio_env"])
    kubernetes.add_pod_label(task, "app.kubernetes.io/part-of", "evdet")
    return task


def _gpu_training(task: dsl.PipelineTask) -> dsl.PipelineTask:
    """GPU limit, GPU node placement, shared memory and Prometheus scrape annotations for the training pod."""
    task.set_accelerator_type(CLUSTER["gpu_resource"]).set_accelerator_limit(CLUSTER["gpus"])
    task.set_cpu_request(CLUSTER["train_cpu"]).set_memory_request(CLUSTER["train_memory"])
    key, value = CLUSTER["gpu_node_selector"]
    kubernetes.add_node_selector(task, label_key=key, label_value=value)
    kubernetes.add_toleration(task, **CLUSTER["gpu_toleration"])
    kubernetes.empty_dir_mount(task, volume_name="dshm", mount_path="/dev/shm", medium="Memory",
                               size_limit=CLUSTER["shm_size"])
    kubernetes.add_pod_annotation(task, "prometheus.io/scrape", "true")
    kubernetes.add_pod_annotation(task, "prometheus.io/port", CLUSTER["metrics_port"])
    kubernetes.add_pod_annotation(task, "prometheus.io/path", "/metrics")
    kubernetes.add_pod_label(task, "evdet/role", "train")
    return task

#: Arguments of the laptop run (`make run`): synthetic training data (official eTraM class ids, so the `etram`
#: dataset config), the local profile, the real recordings.
LOCAL_DEFAULTS = {
    "overrides": ["dataset=etram", "profile=local"],
    "class_names": "etram",
    "preprocess_args": [],
    "eval_split": "test",
    "metrics_addr": "127.0.0.1",
}


#: The steps every experiment pipeline runs (the end of its description).
STEPS = "preprocess -> train -> evaluate -> detect"


def pipeline_identity(experiment: str) -> dict[str, str]:
    """Name, description and default ``class_names`` of ``experiment``'s pipeline, from its composed Hydra config.

    Returns:
        ``{"name": "evdet-<experiment_name, lower case, _ -> ->", "description": "<description>. Steps: <STEPS>.",
        "class_names": "<dataset.class_names joined by ','>"}``; without a ``description`` key the description starts
        ``"Experiment <experiment>."``.

    Raises:
        hydra.errors.ConfigCompositionException: ``experiment`` names no config in ``conf/experiment/`` (Hydra's
            message lists the available ones) or the config does not compose.
    """
    cfg = compose_config([f"experiment={experiment}"])
    what = str(cfg.get("description") or f"Experiment {experiment}").strip()
    if not what.endswith((".", "!", "?")):
        what += "."
    return {
        "name": "evdet-" + experiment_slug(str(cfg.experiment_name)),
        "description": f"{what} Steps: {STEPS}.",
        "class_names": ",".join(cfg.dataset.class_names),
    }


def build_pipeline(experiment: str):
    """Return the KFP pipeline function for ``experiment`` (a Hydra ``experiment`` config name), named and described
    as :func:`pipeline_identity` says."""

    identity = pipeline_identity(experiment)
    default_class_names = identity["class_names"]

    @dsl.pipeline(name=identity["name"], description=identity["description"])
    def pipeline(
        raw_data_uri: str,
        overrides: list = [],  # noqa: B006 (kfp pipeline defaults are literal values)
        recordings: list = [],  # noqa: B006
        store_uri: str = "",
        run_id: str = "",
        class_names: str = default_class_names,
        preprocess_args: list = [],  # noqa: B006
        eval_split: str = "test",
        metrics_addr: str = "0.0.0.0",
    ):
        shards = preprocess(raw_data_uri=raw_data_uri, class_names=class_names,
                            preprocess_args=preprocess_args).set_display_name("preprocess")
        _storage_access(shards)
        trained = train(
            experiment=experiment,
            overrides=overrides,
            run_id=run_id,
            pipeline_job_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
            store_uri=store_uri,
            shards=shards.outputs["shards"],
            metrics_addr=metrics_addr,
        ).set_display_name("train")
        _gpu_training(_storage_access(trained))
        evaluated = evaluate(
            split=eval_split,
            store_uri=store_uri,
            shards=shards.outputs["shards"],
            model=trained.outputs["model"],
        ).set_display_name("evaluate")
        _storage_access(evaluated)
        detected = detect(recordings=recordings, store_uri=store_uri, model=trained.outputs["model"])
        _storage_access(detected.set_display_name("detect"))

    return pipeline
