"""Classes by name: dataset class lists, name -> name class maps, shards that record their names, one clear error
for any mismatch, and the data module's view of them."""

from __future__ import annotations

import numpy as np
import pytest
from shard_factory import write_test_shard

from evdet.data.classes import (CLASS_MAPS, DATASET_CLASS_NAMES, ETRAM_CLASSES, ETRAM_CLS8_SAMPLE_CLASSES,
                                GROUPED3_CLASSES, ClassMap, class_lookup, get_class_map, resolve_class_names)
from evdet.data.labels import LabelError
from evdet.data.shards import ShardError, load_shards
from evdet.model.config import compose_config, dataset_classes
from evdet.model.training.dataset import RandomSequenceDataset, StreamingBatches, build_dataloader
from evdet.model.training.datamodule import ShardDataModule

C, H, W, WINDOW = 2, 8, 12, 50_000
LABELLED = (1, 2, 4)
# boxes per labelled window (official eTraM ids): window 1 holds every class once, window 2 a car and a bus,
# window 4 a tram only
CLASSES_PER_WINDOW = {1: list(range(8)), 2: [1, 3], 4: [6]}


def write_shard(path, class_names=ETRAM_CLASSES, class_ids=CLASSES_PER_WINDOW):
    frames = np.stack([np.full((C, H, W), i + 1, np.uint8) for i in range(6)])
    boxes = {w: [(float(k), 1.0, 2.0, 2.0, c) for k, c in enumerate(ids)] for w, ids in class_ids.items()}
    return write_test_shard(path, frames, (np.arange(6) + 1) * WINDOW, boxes, class_names=class_names)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    d = tmp_path_factory.mktemp("classes")
    for split in ("train", "val"):
        (d / split).mkdir()
        write_shard(d / split / "rec.h5")
    return d


def test_dataset_class_lists_and_their_configs():
    assert DATASET_CLASS_NAMES["etram"] == ETRAM_CLASSES == (
        "pedestrian", "car", "bicycle", "bus", "motorbike", "truck", "tram", "wheelchair")
    assert DATASET_CLASS_NAMES["etram_cls8_sample"] == ETRAM_CLS8_SAMPLE_CLASSES == (
        "Car", "Truck", "Motorcycle", "Bicycle", "Pedestrian", "Bus", "Static", "Other")
    for name, classes in DATASET_CLASS_NAMES.items():  # the Hydra dataset configs declare the same lists
        cfg = compose_config([f"dataset={name}"])
        assert tuple(cfg.dataset.class_names) == classes and cfg.dataset.num_classes == len(classes)
        assert set(cfg.dataset.small_classes) <= set(classes)
    assert resolve_class_names("etram") == ETRAM_CLASSES
    assert resolve_class_names("a, b,c") == ("a", "b", "c")
    with pytest.raises(ValueError, match="expected a dataset name"):
        resolve_class_names("coco")
    with pytest.raises(ValueError, match="duplicate"):
        resolve_class_names("a,a")


@pytest.mark.parametrize(("source", "expected"), [
    (ETRAM_CLASSES, ["pedestrian", "vehicle", "micromobility", "vehicle", "micromobility", "vehicle", "vehicle",
                     "micromobility"]),
    (ETRAM_CLS8_SAMPLE_CLASSES, ["vehicle", "vehicle", "micromobility", "micromobility", "pedestrian", "vehicle",
                                 None, None]),
])
def test_grouped3_is_the_papers_three_classes_from_either_naming(source, expected):
    lookup = class_lookup(source, "grouped3")
    assert lookup.class_names == GROUPED3_CLASSES
    assert [GROUPED3_CLASSES[t] if t >= 0 else None for t in lookup.table] == expected


def test_etram8_maps_the_sample_names_onto_the_official_classes():
    lookup = class_lookup(ETRAM_CLS8_SAMPLE_CLASSES, "etram8")
    names = [ETRAM_CLASSES[t] if t >= 0 else None for t in lookup.table]
    assert names == ["car", "truck", "motorbike", "bicycle", "pedestrian", "bus", None, None]
    assert class_lookup(ETRAM_CLASSES, "etram8").table.tolist() == list(range(8))  # official names: identity
    assert set(CLASS_MAPS) == {"grouped3", "etram8"}
    with pytest.raises(ValueError, match="class_map 'coco80' is unknown"):
        get_class_map("coco80")
    with pytest.raises(ValueError, match="maps to 'cars'"):
        ClassMap("bad", ("car",), {"Car": "cars"})


def test_dataset_maps_on_load_by_name(root):
    ds = RandomSequenceDataset(root / "train", seq_len=1, class_map="grouped3")
    by_window = {}
    for i in range(len(ds)):
        sample = ds[i]
        window = int(sample["representation"][0, 0, 0, 0]) - 1
        by_window[window] = sample["labels"][0]
        assert bool(sample["has_label"][0])  # the frame stays even when the map drops all its boxes
    assert sorted(by_window) == list(LABELLED)
    lookup = class_lookup(ETRAM_CLASSES, "grouped3")
    for window, boxes in by_window.items():
        assert boxes[:, 0].tolist() == [float(lookup.table[c]) for c in CLASSES_PER_WINDOW[window]]
        assert boxes[:, 1].tolist() == [float(k) for k in range(len(CLASSES_PER_WINDOW[window]))]
    identity = RandomSequenceDataset(root / "train", seq_len=1)
    assert identity[0]["labels"][0][:, 0].tolist() == [float(c) for c in range(8)]
    stream = next(iter(StreamingBatches(root / "train", 1, 6, class_map="grouped3")))
    assert stream["labels"][1][0][:, 0].tolist() == [float(lookup.table[c]) for c in range(8)]


def test_sample_naming_drops_static_and_other(tmp_path):
    write_shard(tmp_path / "s.h5", class_names=ETRAM_CLS8_SAMPLE_CLASSES, class_ids={1: [6, 0, 7], 2: [4], 4: [7]})
    ds = RandomSequenceDataset(tmp_path, seq_len=1, class_map="grouped3")
    labels = {int(ds[i]["representation"][0, 0, 0, 0]) - 1: ds[i]["labels"][0] for i in range(len(ds))}
    assert labels[1][:, 0].tolist() == [1.0] and labels[2][:, 0].tolist() == [0.0] and len(labels[4]) == 0


def test_mismatches_are_one_clear_error(tmp_path, root):
    with pytest.raises(ShardError, match=r"rec\.h5: attribute 'class_names' is \['pedestrian'.*declares \['Car'"):
        load_shards(root / "train", class_names=list(ETRAM_CLS8_SAMPLE_CLASSES))
    other = tmp_path / "other"
    other.mkdir()
    write_shard(other / "a.h5")
    write_shard(other / "b.h5", class_names=ETRAM_CLS8_SAMPLE_CLASSES)
    with pytest.raises(ShardError, match=r"b\.h5: class_names \['Car'.*differ from a\.h5's"):
        load_shards(other)
    named = tmp_path / "named"
    named.mkdir()
    write_shard(named / "x.h5", class_names=[f"k{i}" for i in range(8)])
    with pytest.raises(LabelError, match=r"x\.h5: classes \['k0', .* unknown to class map 'grouped3'"):
        build_dataloader(named, sampling="stream", batch_size=1, seq_len=2, class_map="grouped3")
    bad_ids = tmp_path / "ids"
    bad_ids.mkdir()
    write_shard(bad_ids / "ids.h5", class_names=["a", "b"], class_ids={1: [0, 5], 2: [1], 4: [0]})
    shard = load_shards(bad_ids)[0]
    with pytest.raises(LabelError, match=r"ids\.h5: field 'class_id' has ids \[5\] outside the 2 classes"):
        shard.frame_boxes(0)


def config(root, **dataset):
    ds = {"path": str(root), "class_names": list(ETRAM_CLASSES), "class_map": None, "num_classes": 8,
          "height": H, "width": W, "sequence_length": 2, "sampling": "stream"}
    ds.update(dataset)
    return {"dataset": ds, "seed": 0, "batch_size": {"train": 2, "eval": 1},
            "hardware": {"num_workers": {"train": 0, "eval": 0}}}


def test_num_classes_must_match(root):
    with pytest.raises(ValueError, match=r"dataset.num_classes is 8 but .* give 3 classes"):
        ShardDataModule(config(root, class_map="grouped3"))
    with pytest.raises(ValueError, match="dataset.class_map: class_map 'coco80' is unknown"):
        dataset_classes({"class_names": ["a"], "class_map": "coco80", "num_classes": 80})
    with pytest.raises(ValueError, match="dataset.class_names: expected the list"):
        dataset_classes({"class_names": "etram", "num_classes": 8})


def test_datamodule_reports_names_and_builds_the_loaders(root):
    data = ShardDataModule(config(root, class_map="grouped3", num_classes=3, sampling="mixed", w_stream=1,
                                  w_random=1, augmentation={"enabled": True, "stream": {"flip_p": 1.0}}))
    facts = data.facts("val")
    assert facts["class_names"] == list(GROUPED3_CLASSES) and facts["class_map"] == "grouped3"
    assert facts["source_class_names"] == list(ETRAM_CLASSES) and facts["histogram"]["bins"] == 1
    train = data.train_dataloader()
    assert type(train.dataset).__name__ == "MixedBatches" and train.dataset.stream_size == 1
    assert train.dataset.stream.augmentation.flip_p == 1.0 and train.dataset.random.augmentation.zoom_p == 0.8
    assert next(iter(train))["representation"].shape[0] == 2
    val = data.val_dataloader()
    assert val.dataset.augmentation is None  # evaluation is never augmented
    ids = {int(c) for per_t in next(iter(val))["labels"] for boxes in per_t for c in boxes[:, 0].tolist()}
    assert ids <= {0, 1, 2}
