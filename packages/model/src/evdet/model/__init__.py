"""evdet.model: the RVT detector, its losses, its training and its inference, one subpackage per concern.

The dependencies run one way (a module imports only from the packages listed before it):

- :mod:`evdet.model.config`, :mod:`evdet.model.config_schema`, ``conf/``: the Hydra configuration, its schema and
  the experiment overlays (``conf/experiment/*.yaml``, the single source of an experiment).
- :mod:`evdet.model.loss`: SimOTA assignment, the YOLOX loss, the size-aware weights.
- :mod:`evdet.model.nn`: the network (MaxViT-RNN backbone, PAFPN, YOLOX and ABC heads, the assembled ``RVT``),
  post-processing and the model summary.
- :mod:`evdet.model.mlops`: the callbacks and loggers a training run carries (Prometheus, store upload, progress
  lines, experiment loggers, run records).
- :mod:`evdet.model.training`: sequence dataset and augmentation over shards, Lightning data module and module,
  recurrence, checkpoints, the training run.
- :mod:`evdet.model.inference`: streaming detection, prediction over shards, ONNX export and the onnxruntime engine.
- :mod:`evdet.model.bench`: the benchmarks of ``evdet-bench``.
- The console entry points parse, call and print; the work is in the packages above.
"""
