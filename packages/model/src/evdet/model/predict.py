"""Detections of a trained model over representation shards, at label timestamps (``evdet-model predict``).

The shards of one split are streamed in order with the recurrent state carried (RVT's evaluation, Sec. 4.1), and the
detections of each labelled window are written per recording as ``<output>/<name>.npy`` (Prophesee box array in
representation pixels, ``t`` = label timestamp in µs, ``class_confidence`` = score) for ``evdet-eval coco``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from evdet.data.dataset import build_dataloader
from evdet.model.checkpoint import load_module
from evdet.model.datamodule import dataset_class_map
from evdet.model.detections import DetectionCollector
from evdet.model.recurrence import run_sequence

__all__ = ["predict_shards"]


@torch.no_grad()
def predict_shards(
    checkpoint: Path, shard_dir: Path, output_dir: Path, *, batch_size: int | None = None, device: str = "cpu"
) -> dict:
    """Run the checkpoint over every shard of ``shard_dir`` and write detections per recording.

    Returns:
        ``{"sequences", "labelled_frames", "detections", "files": [paths]}``.

    Raises:
        FileNotFoundError: missing checkpoint or no shards in ``shard_dir``.
    """
    module, config = load_module(checkpoint, device)
    if not any(Path(shard_dir).glob("*.h5")):  # checked before building the loader, for a clear message
        raise FileNotFoundError(f"{shard_dir}: no representation shards (*.h5)")
    val = config["validation"]
    loader = build_dataloader(
        Path(shard_dir),
        sampling="stream",
        batch_size=int(batch_size or config["batch_size"]["eval"]),
        seq_len=int(config["dataset"]["sequence_length"]),
        num_workers=0,
        seed=int(config["seed"]),
        shuffle=False,
        class_map=dataset_class_map(config["dataset"]),  # labels in the ids the model was trained on
    )
    collector = DetectionCollector()
    states = None
    frames_seen = 0
    for batch in loader:
        frames, states = run_sequence(module.model, batch, states)
        if frames.count == 0:
            continue
        frames_seen += frames.count
        dets = module.model.detect(frames.features, float(val["confidence_threshold"]), float(val["nms_threshold"]))
        collector.add(batch["sequence"], frames.batch_index, frames.label_t_us, frames.targets, dets)
    names = [p.stem for p in Path(shard_dir).glob("*.h5")]
    files = collector.save(Path(output_dir), names=names)
    return {
        "sequences": len(files),
        "labelled_frames": frames_seen,
        "detections": int(sum(len(collector.detections(n)) for n in collector.sequences)),
        "files": [str(f) for f in files],
    }
