"""The console entry points of ``evdet.model``: each parses its flags, calls the package that does the work and
prints the result (docs/cli.md has the convention they share).

- :mod:`evdet.model.cli.model`: ``evdet-model`` (summary, predict, import-rvt, export);
- :mod:`evdet.model.cli.detect`: ``evdet-detect`` (the detection itself: :mod:`evdet.model.inference.detect`);
- :mod:`evdet.model.cli.train`: ``evdet-train`` (the run itself: :mod:`evdet.model.training.train`);
- :mod:`evdet.model.cli.flags`: ``--device`` (default ``auto``) and its check, shared with ``evdet-bench``;

The one-line errors, ``print_result`` and hidden old spellings come from :mod:`evdet.data.cli_convention` (shared
with ``evdet-data``, ``evdet-eval`` and ``evdet-report``).
"""

import lazy_loader

# The entry points are addressed by module (``evdet.model.cli.detect:main``, ...); the device flag is the one public
# name the benchmarks share. Loaded on first use (``lazy_loader``, SPEC 1): importing one tool loads no other.
__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={"flags": ["check_device", "resolve_device"]},
)
