"""Detections of a trained model over representation shards, at every object frame (``evdet-model predict``).

The shards of one split are streamed in order with the recurrent state carried (RVT's evaluation, Sec. 4.1); every
object frame ends a window, so every kept label frame gets a prediction, stamped with its label time, exactly as in
the in-loop validation. Written to ``<output>/``, the input of ``evdet-eval prophesee --gt OUT --detections OUT``:

- ``<name>.npy``: the detections (Prophesee box array, representation px, ``t`` = frame time in µs,
  ``class_confidence`` = the score named by ``dataset.evaluation.score``);
- ``<name>_bbox.npy``: the ground truth the model is scored against (the object frames' boxes as the loader yields
  them, in the model's classes);
- ``detections.json``: what the evaluator needs to know (class names, frame size, downsample factor, score kind,
  evaluation protocol, thresholds, checkpoint);
- ``.evdet-manifest.json``: the files this run wrote (:mod:`evdet.data.output_folder`).

The output folder must be missing or empty; ``overwrite`` (``--overwrite``) replaces exactly the files of an earlier
``evdet-model predict`` run there (no detections of a recording the new run does not have are left behind), and is
refused when the folder holds other files. The files appear only when the whole split was predicted (written into a
staging folder first); an error or Ctrl-C leaves the folder as it was.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from evdet.model.training.dataset import build_dataloader
from evdet.data.labels import save_boxes
from evdet.data.output_folder import OutputFolder, check_output_folder
from evdet.data.shards import ShardError, list_shards
from evdet.model.training.checkpoint import load_module
from evdet.model.config import dataset_classes
from evdet.model.training.datamodule import shard_facts
from evdet.model.training.detections import DetectionCollector
from evdet.model.training.recurrence import run_sequence

__all__ = ["DESCRIPTION_FILE", "TOOL", "predict_shards"]

#: Tool name recorded in the output folder's manifest.
TOOL = "evdet-model predict"

DESCRIPTION_FILE = "detections.json"
"""Name of the file that describes a folder of detections (read by ``evdet-eval prophesee``)."""


@torch.no_grad()
def predict_shards(
    checkpoint: Path, shard_dir: Path, output_dir: Path, *, batch_size: int | None = None, device: str = "cpu",
    overwrite: bool = False, confidence_threshold: float | None = None, nms_threshold: float | None = None,
) -> dict:
    """Run the checkpoint over every shard of ``shard_dir`` and write detections and ground truth per recording.

    Args:
        checkpoint: Lightning checkpoint of ``evdet-train`` or ``evdet-model import-rvt`` (local or ``s3://``).
        shard_dir: one split folder of shards.
        output_dir: destination folder: missing or empty, or an earlier ``evdet-model predict`` output with
            ``overwrite`` (module docstring).
        batch_size: recordings streamed in parallel, >= 1 (default ``batch_size.eval`` of the run).
        device: torch device string.
        overwrite: replace the outputs of an earlier ``evdet-model predict`` run in ``output_dir``.
        confidence_threshold: minimum score of a kept detection in [0, 1] (default: the run's
            ``validation.confidence_threshold``).
        nms_threshold: IoU of class-aware NMS in [0, 1] (default: the run's ``validation.nms_threshold``).

    Returns:
        ``{"sequences", "labelled_frames", "detections", "files": [paths]}``.

    Raises:
        OutputFolderError: ``output_dir`` is not empty without ``overwrite``, or holds files no earlier predict run
            wrote (checked before the checkpoint is loaded; nothing is written).
        ValueError: ``batch_size`` < 1.
        FileNotFoundError: missing checkpoint or no shards in ``shard_dir``.
        evdet.data.shards.ShardError: shards whose class names differ from the run's ``dataset.class_names`` or
            that are malformed (names the file).
    """
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size: expected a positive number of recordings, got {batch_size!r}")
    check_output_folder(output_dir, TOOL, overwrite)
    module, config = load_module(checkpoint, device)
    try:  # checked before building the loader, for a clear message
        shard_paths = list_shards(shard_dir)
    except ShardError:
        raise FileNotFoundError(f"{shard_dir}: no representation shards (*.h5)") from None
    ds, val = config["dataset"], dict(config["validation"])
    val["confidence_threshold"] = val["confidence_threshold"] if confidence_threshold is None else confidence_threshold
    val["nms_threshold"] = val["nms_threshold"] if nms_threshold is None else nms_threshold
    facts = shard_facts(Path(shard_dir), ds)
    evaluation = dict(ds.get("evaluation") or {})
    loader = build_dataloader(
        Path(shard_dir),
        sampling="stream",
        batch_size=int(batch_size or config["batch_size"]["eval"]),
        seq_len=int(ds["sequence_length"]),
        num_workers=0,
        seed=int(config["seed"]),
        shuffle=False,
        class_map=ds.get("class_map"),
        class_names=list(ds["class_names"]),
    )
    collector = DetectionCollector(score=str(evaluation.get("score", "class_conf")))
    states = None
    frames_seen = 0
    for batch in loader:
        frames, states = run_sequence(module.model, batch, states)
        if frames.count == 0:
            continue
        frames_seen += frames.count
        dets = module.model.detect(frames.features, float(val["confidence_threshold"]), float(val["nms_threshold"]))
        collector.add(batch["sequence"], frames.batch_index, frames.label_t_us, frames.targets, dets)
    names = sorted(p.stem for p in shard_paths)
    description = {
        "class_names": list(dataset_classes(ds).class_names),
        "width": facts["width"],
        "height": facts["height"],
        "sensor_width": facts["sensor_width"],
        "sensor_height": facts["sensor_height"],
        "downsample_factor": facts["downsample_factor"],
        "score": collector.score,
        "protocol": evaluation.get("protocol", "etram"),
        "camera": evaluation.get("camera", "gen4"),
        "confidence_threshold": float(val["confidence_threshold"]),
        "nms_threshold": float(val["nms_threshold"]),
        "checkpoint": str(checkpoint),
        "shards": str(shard_dir),
        "recordings": names,
    }
    with OutputFolder(output_dir, TOOL, overwrite=overwrite) as output:
        files = collector.save(output.staging, names=names)
        for name in names:
            files.append(save_boxes(output.staging / f"{name}_bbox.npy", collector.labels(name)))
        (output.staging / DESCRIPTION_FILE).write_text(json.dumps(description, indent=2) + "\n")
    return {
        "sequences": len(names),
        "labelled_frames": frames_seen,
        "detections": int(sum(len(collector.detections(n)) for n in collector.sequences)),
        "files": [str(output.final(f)) for f in files],
    }
