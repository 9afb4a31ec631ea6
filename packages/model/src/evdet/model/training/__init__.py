"""Training: sequence dataset and augmentation over representation shards, the Lightning data module and module,
recurrence over sequences, checkpoints, and the run itself (:func:`run_training`, used by ``evdet-train``).

Modules:

- :mod:`evdet.model.training.dataset`: random / streaming / mixed sequence sampling over shards.
- :mod:`evdet.model.training.augmentation`: RVT's flip / zoom training augmentation.
- :mod:`evdet.model.training.datamodule`: the Lightning data module.
- :mod:`evdet.model.training.recurrence`: the detector over B sequences x L windows.
- :mod:`evdet.model.training.module`: the Lightning module: loss, validation AP, optimiser.
- :mod:`evdet.model.training.detections`: detections and labels per recording as Prophesee arrays.
- :mod:`evdet.model.training.checkpoint`: reading, checking and loading checkpoints.
- :mod:`evdet.model.training.rvt_import`: weights of the reference RVT implementation as an evdet checkpoint.
- :mod:`evdet.model.training.train`: one training run: lifecycle, resume, upload.

The public names below load their module on first use (``lazy_loader``, SPEC 1), so importing one module of this
package does not import the others.
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "datamodule": ["ShardDataModule"],
        "module": ["DetectionModule"],
        "dataset": ["build_dataloader"],
        "checkpoint": ["load_module"],
        "train": ["run_training"],
    },
)
