"""Class names of the datasets' raw label ids, and class maps from one naming to another, by name.

A label file stores integer ``class_id`` s; what they mean is a property of the dataset, not of evdet. Each dataset
declares the names of its ids in id order (:data:`DATASET_CLASS_NAMES`, and the Hydra dataset configs repeat them
as ``dataset.class_names``); the preprocessing records them in every shard (attribute ``class_names``), and a
training run, predict and evaluation read them back from the shard. A :class:`ClassMap` maps source class NAMES to
target class names (or drops them), so it works for any dataset whose names it lists, and a mismatch is an error
that names both lists instead of silently relabelling classes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from evdet.data.labels import ETRAM_CLASSES, LabelError

__all__ = [
    "CLASS_MAPS",
    "DATASET_CLASS_NAMES",
    "ETRAM_CLASSES",
    "ETRAM_CLS8_SAMPLE_CLASSES",
    "GROUPED3_CLASSES",
    "ClassLookup",
    "ClassMap",
    "class_lookup",
    "get_class_map",
    "resolve_class_names",
]

ETRAM_CLS8_SAMPLE_CLASSES: tuple[str, ...] = ("Car", "Truck", "Motorcycle", "Bicycle", "Pedestrian", "Bus", "Static",
                                              "Other")
"""The team's 8-class eTraM sample (ids 0..7 as in its label files and reports)."""

GROUPED3_CLASSES: tuple[str, ...] = ("pedestrian", "vehicle", "micromobility")
"""The eTraM paper's three classes (Verma et al., CVPR 2024, Sec. 4): pedestrian, vehicle (car, bus, truck, tram),
micromobility (bicycle, motorbike, wheelchair)."""

DATASET_CLASS_NAMES: dict[str, tuple[str, ...]] = {
    "etram": ETRAM_CLASSES,
    "etram_cls8_sample": ETRAM_CLS8_SAMPLE_CLASSES,
}
"""Class names of the raw label ids, in id order, per dataset name (``conf/dataset/<name>.yaml`` lists the same)."""


@dataclass(frozen=True)
class ClassMap:
    """A mapping of source class names to target class names.

    Attributes:
        name: key in :data:`CLASS_MAPS`.
        class_names: the target classes; index = target class id.
        mapping: source name -> target name, or ``None`` to drop the boxes of that source class. Names are matched
            exactly (a map lists every spelling it accepts).

    Raises:
        ValueError: on construction, if a target name is not in ``class_names`` (message names the map and entry).
    """

    name: str
    class_names: tuple[str, ...]
    mapping: Mapping[str, str | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for src, dst in self.mapping.items():
            if dst is not None and dst not in self.class_names:
                raise ValueError(f"class map '{self.name}': '{src}' maps to '{dst}', expected one of "
                                 f"{list(self.class_names)} or null")


#: Registered class maps by name (``dataset.class_map``; ``null`` keeps the dataset's own classes).
#:
#: * ``grouped3``: the eTraM paper's three classes from either naming (official eTraM or the team's sample);
#:   the sample's ``Static`` and ``Other`` have no counterpart and are dropped.
#: * ``etram8``: the team's sample names onto the official eTraM classes (Motorcycle -> motorbike, ...); ``Static``
#:   and ``Other`` are dropped; tram and wheelchair then have no labels.
CLASS_MAPS: dict[str, ClassMap] = {
    "grouped3": ClassMap("grouped3", GROUPED3_CLASSES, {
        "pedestrian": "pedestrian", "car": "vehicle", "bus": "vehicle", "truck": "vehicle", "tram": "vehicle",
        "bicycle": "micromobility", "motorbike": "micromobility", "wheelchair": "micromobility",
        "Pedestrian": "pedestrian", "Car": "vehicle", "Bus": "vehicle", "Truck": "vehicle",
        "Bicycle": "micromobility", "Motorcycle": "micromobility", "Static": None, "Other": None,
    }),
    "etram8": ClassMap("etram8", ETRAM_CLASSES, {
        "Car": "car", "Truck": "truck", "Motorcycle": "motorbike", "Bicycle": "bicycle", "Pedestrian": "pedestrian",
        "Bus": "bus", "Static": None, "Other": None,
        **{name: name for name in ETRAM_CLASSES},
    }),
}


def get_class_map(name: str) -> ClassMap:
    """The registered :class:`ClassMap` called ``name``.

    Raises:
        ValueError: ``name`` is not in :data:`CLASS_MAPS` (the message lists the known names).
    """
    if name not in CLASS_MAPS:
        raise ValueError(f"class_map '{name}' is unknown; known: {sorted(CLASS_MAPS)} (or null for the dataset's "
                         "own classes)")
    return CLASS_MAPS[name]


def resolve_class_names(spec: str | Sequence[str]) -> tuple[str, ...]:
    """Class names from a dataset name of :data:`DATASET_CLASS_NAMES`, a comma-separated list or a sequence.

    Raises:
        ValueError: an unknown dataset name that is not a list either, an empty name, or duplicates.
    """
    if isinstance(spec, str):
        if spec in DATASET_CLASS_NAMES:
            return DATASET_CLASS_NAMES[spec]
        if "," not in spec:
            raise ValueError(f"class names '{spec}': expected a dataset name {sorted(DATASET_CLASS_NAMES)} or a "
                             "comma-separated list of names in class-id order")
        names = [n.strip() for n in spec.split(",")]
    else:
        names = [str(n) for n in spec]
    if not names or any(not n for n in names):
        raise ValueError(f"class names {spec!r}: expected non-empty names")
    if len(set(names)) != len(names):
        raise ValueError(f"class names {names}: duplicate names")
    return tuple(names)


@dataclass(frozen=True)
class ClassLookup:
    """Source class ids -> target class ids, built by :func:`class_lookup`.

    Attributes:
        source_names: the source classes (index = source id).
        class_names: the target classes (index = target id).
        table: ``(S,)`` int64, target id per source id, ``-1`` for a dropped class.
        class_map: name of the applied :class:`ClassMap`, or ``None`` for the identity.
    """

    source_names: tuple[str, ...]
    class_names: tuple[str, ...]
    table: np.ndarray
    class_map: str | None

    @property
    def num_classes(self) -> int:
        """Number of target classes."""
        return len(self.class_names)

    def __call__(self, class_ids: np.ndarray, source: str = "<labels>") -> np.ndarray:
        """Target id of each source id (``-1``: dropped).

        Args:
            class_ids: ``(M,)`` integer source class ids.
            source: file the ids came from, named in errors.

        Returns:
            ``(M,)`` int64.

        Raises:
            LabelError: an id outside ``0 .. S - 1`` (message names ``source``, the ids and the class names).
        """
        ids = np.asarray(class_ids).astype(np.int64, copy=False).reshape(-1)
        if len(ids) and (ids.min() < 0 or ids.max() >= len(self.table)):
            bad = sorted({int(i) for i in ids if not 0 <= i < len(self.table)})
            raise LabelError(f"{source}: field 'class_id' has ids {bad} outside the {len(self.table)} classes "
                             f"{list(self.source_names)}")
        return self.table[ids]


def class_lookup(source_names: Sequence[str], class_map: str | ClassMap | None = None,
                 source: str = "<labels>") -> ClassLookup:
    """Build the id lookup from classes ``source_names`` through ``class_map`` (``None``: identity).

    Args:
        source_names: class names of the source ids, in id order (e.g. a shard's ``class_names``).
        class_map: a :class:`ClassMap`, its registered name, or ``None``.
        source: where the source names come from (file), named in errors.

    Returns:
        The :class:`ClassLookup`.

    Raises:
        ValueError: an unknown map name.
        LabelError: a source class the map does not list (message names the class, ``source`` and the map).
    """
    names = tuple(str(n) for n in source_names)
    if class_map is None:
        return ClassLookup(names, names, np.arange(len(names), dtype=np.int64), None)
    cmap = get_class_map(class_map) if isinstance(class_map, str) else class_map
    unknown = [n for n in names if n not in cmap.mapping]
    if unknown:
        raise LabelError(f"{source}: classes {unknown} are unknown to class map '{cmap.name}' (it maps "
                         f"{sorted(cmap.mapping)}); source classes are {list(names)}")
    table = np.array([-1 if cmap.mapping[n] is None else cmap.class_names.index(cmap.mapping[n]) for n in names],
                     dtype=np.int64)
    return ClassLookup(names, tuple(cmap.class_names), table, cmap.name)
