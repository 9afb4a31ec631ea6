"""Class maps by config: experiment8 / etram8 / grouped3, remapped on load, checked against num_classes."""

from __future__ import annotations

import numpy as np
import pytest

from evdet.data.dataset import RandomSequenceDataset, StreamingBatches, build_dataloader, load_shards
from evdet.data.labels import (
    BBOX_DTYPE,
    CLASS_MAPS,
    ETRAM_CLASSES,
    EXPERIMENT_CLASSES,
    GROUPED3_CLASSES,
    LabelError,
    get_class_map,
)
from evdet.data.shards import ShardError, ShardWriter
from evdet.model.datamodule import ShardDataModule, dataset_class_map

C, H, W, WINDOW = 2, 8, 12, 50_000
LABELLED = (1, 2, 4)
# boxes per labelled window: window 1 holds every experiment class once, window 2 only Static + Car, window 4 Other
CLASSES_PER_WINDOW = {1: list(range(8)), 2: [6, 0], 4: [7]}


def write_shard(path, class_ids=CLASSES_PER_WINDOW, class_map="experiment8"):
    writer = ShardWriter(path, C, W, H)
    for i in range(6):
        writer.append(np.full((C, H, W), i + 1, np.uint8), (i + 1) * WINDOW)
    rows, slices = [], []
    for w in LABELLED:
        start = len(rows)
        rows += [((w + 1) * WINDOW - 1, float(k), 1.0, 2.0, 2.0, c, k, 1.0) for k, c in enumerate(class_ids[w])]
        slices.append((start, len(rows)))
    labels = np.array(rows, BBOX_DTYPE)
    writer.finish(labels, np.array([(w + 1) * WINDOW - 1 for w in LABELLED]), np.asarray(LABELLED, np.int64),
                  np.asarray(slices, np.int64),
                  {"width": W, "height": H, "sensor_width": W, "sensor_height": H, "downsample_factor": 1,
                   "window_us": WINDOW, "bins": 1, "clip": 10, "source": path.name, "dropped_degenerate_boxes": 0,
                   "class_map": class_map})
    return path


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    d = tmp_path_factory.mktemp("cmaps")
    for split in ("train", "val"):
        (d / split).mkdir()
        write_shard(d / split / "rec.h5")
    return d


def test_registered_maps_and_their_names():
    assert set(CLASS_MAPS) == {"experiment8", "etram8", "grouped3"}
    assert get_class_map("etram8").class_names == ETRAM_CLASSES == (
        "pedestrian", "car", "bicycle", "bus", "motorbike", "truck", "tram", "wheelchair")
    assert get_class_map("grouped3").class_names == GROUPED3_CLASSES == ("pedestrian", "vehicle", "micromobility")
    assert get_class_map("experiment8").class_names == EXPERIMENT_CLASSES


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        # experiment ids: Car, Truck, Motorcycle, Bicycle, Pedestrian, Bus, Static, Other
        ("experiment8", {0: "Car", 1: "Truck", 2: "Motorcycle", 3: "Bicycle", 4: "Pedestrian", 5: "Bus",
                         6: "Static", 7: "Other"}),
        ("etram8", {0: "car", 1: "truck", 2: "motorbike", 3: "bicycle", 4: "pedestrian", 5: "bus", 6: None,
                    7: None}),
        ("grouped3", {0: "vehicle", 1: "vehicle", 2: "micromobility", 3: "micromobility", 4: "pedestrian",
                      5: "vehicle", 6: None, 7: None}),
    ],
)
def test_each_experiment_class_maps_to_the_documented_target(name, expected):
    cmap = get_class_map(name)
    target = cmap.target_ids(np.arange(8))
    names = {src: (cmap.class_names[t] if t >= 0 else None) for src, t in enumerate(target.tolist())}
    assert names == expected


@pytest.mark.parametrize("name", ["etram8", "grouped3"])
def test_dataset_remaps_on_load_and_keeps_boxes_per_window(root, name):
    cmap = get_class_map(name)
    ds = RandomSequenceDataset(root / "train", seq_len=1, class_map=name)
    by_window = {}
    for i in range(len(ds)):
        sample = ds[i]
        window = int(sample["representation"][0, 0, 0, 0]) - 1
        by_window[window] = sample["labels"][0]
        assert bool(sample["has_label"][0])  # label timestamps kept even when every box was dropped
    assert sorted(by_window) == list(LABELLED)
    for window, boxes in by_window.items():
        src = [c for c in CLASSES_PER_WINDOW[window] if cmap.mapping[c] is not None]
        expected_ids = [cmap.mapping[c] for c in src]
        assert boxes[:, 0].tolist() == expected_ids
        # the x coordinate encodes the box's position in the window: the right boxes survived
        assert boxes[:, 1].tolist() == [float(CLASSES_PER_WINDOW[window].index(c)) for c in src]
    assert len(by_window[4]) == 0  # Other only: dropped
    stream = next(iter(StreamingBatches(root / "train", 1, 6, class_map=name)))
    assert stream["labels"][1][0][:, 0].tolist() == [cmap.mapping[c] for c in range(8) if cmap.mapping[c] is not None]


def test_experiment8_keeps_the_ids(root):
    ds = RandomSequenceDataset(root / "train", seq_len=1, class_map="experiment8")
    assert ds[0]["labels"][0][:, 0].tolist() == list(range(8))


def test_unknown_class_id_names_the_file(tmp_path):
    write_shard(tmp_path / "bad_ids.h5", class_ids={1: [0, 9], 2: [1], 4: [2]})
    with pytest.raises(LabelError, match=r"bad_ids\.h5.*\[9\].*'grouped3'"):
        load_shards(tmp_path, "grouped3")
    with pytest.raises(LabelError, match=r"bad_ids\.h5"):
        build_dataloader(tmp_path, sampling="stream", batch_size=1, seq_len=2, class_map="experiment8")


def test_shards_written_in_another_map(tmp_path):
    write_shard(tmp_path / "g3.h5", class_ids={1: [0, 1, 2], 2: [1], 4: [2]}, class_map="grouped3")
    shard = load_shards(tmp_path, "grouped3")[0]  # already in the map: kept as is
    assert shard.labels["class_id"].tolist() == [0, 1, 2, 1, 2]
    with pytest.raises(ShardError, match=r"g3\.h5.*'class_map' is 'grouped3'"):
        load_shards(tmp_path, "etram8")
    write_shard(tmp_path / "g3.h5", class_ids={1: [0, 5], 2: [1], 4: [2]}, class_map="grouped3")
    with pytest.raises(LabelError, match=r"g3\.h5.*\[5\]"):
        load_shards(tmp_path, "grouped3")


def config(root, **dataset):
    ds = {"path": str(root), "class_map": "experiment8", "num_classes": 8, "height": H, "width": W,
          "sequence_length": 2, "sampling": "stream"}
    ds.update(dataset)
    return {"dataset": ds, "seed": 0, "batch_size": {"train": 2, "eval": 1},
            "hardware": {"num_workers": {"train": 0, "eval": 0}}}


def test_num_classes_must_match_the_map(root):
    with pytest.raises(ValueError, match=r"dataset.num_classes is 8 but dataset.class_map 'grouped3' has 3"):
        ShardDataModule(config(root, class_map="grouped3"))
    with pytest.raises(ValueError, match="dataset.class_map: class_map 'coco80' is unknown"):
        dataset_class_map({"class_map": "coco80", "num_classes": 80})
    assert dataset_class_map({"num_classes": 8}).name == "experiment8"  # configs saved before the key


def test_datamodule_reports_map_names_and_builds_the_loaders(root):
    data = ShardDataModule(config(root, class_map="grouped3", num_classes=3, sampling="mixed", w_stream=1,
                                  w_random=1, augmentation={"enabled": True, "flip_p": 1.0}))
    facts = data.facts("val")
    assert facts["class_names"] == list(GROUPED3_CLASSES) and facts["class_map"] == "grouped3"
    train = data.train_dataloader()
    assert type(train.dataset).__name__ == "MixedBatches" and train.dataset.stream_size == 1
    assert train.dataset.stream.augmentation is not None and train.dataset.stream.augmentation.flip_p == 1.0
    batch = next(iter(train))
    assert batch["representation"].shape[0] == 2
    val = data.val_dataloader()
    assert val.dataset.augmentation is None  # evaluation is never augmented
    ids = {int(c) for per_t in next(iter(val))["labels"] for boxes in per_t for c in boxes[:, 0].tolist()}
    assert ids <= {0, 1, 2}
