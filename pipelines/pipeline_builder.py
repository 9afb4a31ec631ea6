"""One builder for every experiment pipeline: preprocess -> train -> evaluate -> detect.

Each ``pipelines/<experiment>.py`` file only calls :func:`build_pipeline` with its experiment name, so the pipeline
body exists once. Parameters of the built pipeline (all overridable at submission):

- ``raw_data_uri``: eTraM-layout dataset directory (train/ val/ test/ with ``<name>_td.h5`` + ``<name>_bbox.npy``);
- ``overrides``: Hydra overrides appended to ``+experiment=<name>`` (e.g. ``["profile=local"]``);
- ``recordings``: raw recordings for the detect step;
- ``store_uri``: where checkpoints, ``experiment_results.json`` and detections are copied (empty: none);
- ``run_id``: the run's id (empty: the training start time);
- ``downsample``: halve the sensor resolution in preprocessing (1280x720 -> 640x360);
- ``eval_split``: split evaluated after training.
"""

from kfp import dsl

from pipeline_components import detect, evaluate, preprocess, train

__all__ = ["build_pipeline", "LOCAL_DEFAULTS"]

#: Arguments of the laptop run (`make run`): synthetic training data, the local profile, the real recordings.
LOCAL_DEFAULTS = {
    "overrides": ["profile=local"],
    "downsample": True,
    "eval_split": "test",
}


def build_pipeline(experiment: str, pipeline_name: str, description: str):
    """Return the KFP pipeline function for ``experiment`` (a Hydra ``experiment`` config name)."""

    @dsl.pipeline(name=pipeline_name, description=description)
    def pipeline(
        raw_data_uri: str,
        overrides: list = [],  # noqa: B006 (kfp pipeline defaults are literal values)
        recordings: list = [],  # noqa: B006
        store_uri: str = "",
        run_id: str = "",
        downsample: bool = True,
        eval_split: str = "test",
    ):
        shards = preprocess(raw_data_uri=raw_data_uri, downsample=downsample).set_display_name("preprocess")
        trained = train(
            experiment=experiment,
            overrides=overrides,
            run_id=run_id,
            store_uri=store_uri,
            shards=shards.outputs["shards"],
        ).set_display_name("train")
        evaluate(
            split=eval_split,
            store_uri=store_uri,
            shards=shards.outputs["shards"],
            model=trained.outputs["model"],
        ).set_display_name("evaluate")
        detect(recordings=recordings, store_uri=store_uri, model=trained.outputs["model"]).set_display_name("detect")

    return pipeline
