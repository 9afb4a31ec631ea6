"""``evdet-model``: model summary, prediction over representation shards, import of RVT weights.

- ``evdet-model summary +experiment=NAME [overrides] [--json] [--all]``: parameters per part, multiply-accumulates
  per frame and feature-map shapes per stage (``--all``: one markdown table over every experiment).
- ``evdet-model predict --checkpoint CKPT --shards DIR --output DIR [--overwrite] [--batch N] [--device D]``:
  detections at label timestamps per recording (input of ``evdet-eval prophesee``). ``--output`` must be missing or
  empty; ``--overwrite`` replaces the files of an earlier predict run there (:mod:`evdet.model.inference.predict`).
  ``--batch`` < 1 or a ``--device`` this machine lacks (``cuda`` without CUDA) is one line naming the flag, exit 2,
  before anything is loaded or written.
- ``evdet-model import-rvt FILE --model rvt_tiny|rvt_small|rvt_base [overrides] --output evdet.ckpt [--overwrite]``:
  weights of the reference RVT implementation (state_dict or Lightning ``.ckpt``) as an evdet checkpoint
  (:mod:`evdet.model.training.rvt_import`).
- ``evdet-model export CHECKPOINT --format onnx --output model.onnx [--height H --width W] [--overwrite]``: one
  streaming step (histogram and LSTM states in, decoded predictions and new states out) as an ONNX graph with the
  evdet settings in its metadata (:mod:`evdet.model.inference.onnx_export`, docs/onnx.md); prints one JSON object (path, opset,
  inputs / outputs with shapes, size_bytes, max_abs_diff of onnxruntime vs torch on a random step).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

from evdet.model.config import compose_checked, list_experiments, to_container
from evdet.model.inference.detect import check_device, check_run_flags
from evdet.model.inference.onnx_export import EXPORT_FORMATS, export_checkpoint
from evdet.model.inference.predict import predict_shards
from evdet.model.training.rvt_import import write_imported_checkpoint
from evdet.model.nn.summary import format_lstm_table, format_markdown_table, format_summary, lstm_cell_counts, summarize

__all__ = ["main"]


def _summary(args: argparse.Namespace, overrides: list[str]) -> int:
    # Configs are composed and validated first (evdet.model.config.ConfigError, a ValueError: one line naming the
    # key); dataset.path is not needed for a summary.
    if args.all:
        configs = [to_container(compose_checked([f"experiment={name}", *overrides], for_training=False))
                   for name in list_experiments()]
        print(format_markdown_table([summarize(config) for config in configs]))
        print("\nConvLSTM parameters per stage width (RVT-B widths):\n")
        print(format_lstm_table(lstm_cell_counts()))
        return 0
    result = summarize(to_container(compose_checked(overrides, for_training=False)))
    print(json.dumps(result) if args.json else format_summary(result))
    return 0


def _predict(args: argparse.Namespace, overrides: list[str]) -> int:
    if overrides:
        raise ValueError(f"predict takes no Hydra overrides (the checkpoint holds the config): {overrides}")
    check_run_flags(batch=args.batch)
    check_device(args.device)
    report = predict_shards(args.checkpoint, args.shards, args.output, batch_size=args.batch, device=args.device,
                            overwrite=args.overwrite)
    print(json.dumps({k: v for k, v in report.items() if k != "files"}))
    return 0


def _import_rvt(args: argparse.Namespace, overrides: list[str]) -> int:
    report = write_imported_checkpoint(
        args.file, args.output, preset=args.model, overrides=overrides, overwrite=args.overwrite
    )
    print(json.dumps(report))
    return 0


def _export(args: argparse.Namespace, overrides: list[str]) -> int:
    if overrides:
        raise ValueError(f"export takes no Hydra overrides (the checkpoint holds the config): {overrides}")
    report = export_checkpoint(args.checkpoint, args.output, export_format=args.format, height=args.height,
                               width=args.width, overwrite=args.overwrite)
    print(json.dumps(report))
    return 0


_COMMANDS = {"summary": _summary, "predict": _predict, "import-rvt": _import_rvt, "export": _export}


def main(argv: list[str] | None = None) -> int:
    """Console entry point; errors print one line on stderr and exit with status 2."""
    parser = argparse.ArgumentParser(prog="evdet-model", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    summary = sub.add_parser("summary", help="parameters, MACs and feature shapes of a config")
    summary.add_argument("--json", action="store_true", help="print one JSON object")
    summary.add_argument("--all", action="store_true", help="markdown table over all experiments")
    predict = sub.add_parser("predict", help="detections over shards at label timestamps")
    predict.add_argument("--checkpoint", type=Path, required=True)
    predict.add_argument("--shards", type=Path, required=True, help="directory of one split's shards")
    predict.add_argument("--output", type=Path, required=True,
                         help="directory for <name>.npy detections: missing or empty, or an earlier predict output "
                              "with --overwrite")
    predict.add_argument("--overwrite", action="store_true",
                         help="replace the outputs of an earlier evdet-model predict run in --output (never other "
                              "files)")
    predict.add_argument("--batch", type=int, default=None, help="recordings streamed in parallel, >= 1")
    predict.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    imp = sub.add_parser(
        "import-rvt",
        help="RVT (uzh-rpg/RVT) weights -> evdet checkpoint",
        usage="evdet-model import-rvt FILE --model {rvt_tiny,rvt_small,rvt_base} [HYDRA_OVERRIDE ...] "
        "--output CKPT [--overwrite]",
        description="Import a reference RVT state_dict or Lightning .ckpt into an evdet checkpoint; the evdet config "
        "is model=<preset> plus the Hydra overrides given (the dataset config decides num_classes).",
    )
    imp.add_argument("file", type=Path, help="RVT state_dict (.pt/.pth) or Lightning checkpoint (.ckpt)")
    imp.add_argument("--model", required=True, choices=("rvt_tiny", "rvt_small", "rvt_base"), help="evdet preset")
    imp.add_argument("--output", type=Path, required=True, help="evdet checkpoint to write")
    imp.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    export = sub.add_parser(
        "export",
        help="checkpoint -> ONNX streaming step (docs/onnx.md)",
        usage="evdet-model export CHECKPOINT --format onnx --output model.onnx [--height H --width W] [--overwrite]",
        description="Export one streaming step of a checkpoint's detector (histogram and LSTM states in, decoded "
        "predictions and new states out) as ONNX with the evdet settings in its metadata_props.",
    )
    export.add_argument("checkpoint", type=Path, help="evdet checkpoint (evdet-train or evdet-model import-rvt)")
    export.add_argument("--format", required=True, help=f"export format: {', '.join(EXPORT_FORMATS)}")
    export.add_argument("--output", type=Path, required=True, help="file to write (model.onnx)")
    export.add_argument("--height", type=int, default=None,
                        help="graph input height in px, a multiple of the detector's input multiple (default: the "
                             "run's dataset.height rounded up to it, 360 -> 384)")
    export.add_argument("--width", type=int, default=None, help="graph input width in px (as --height)")
    export.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    args, overrides = parser.parse_known_args(argv)
    try:
        return _COMMANDS[args.command](args, overrides)
    except (HydraException, OmegaConfBaseException, FileNotFoundError, FileExistsError, ValueError) as exc:
        print(f"evdet-model {args.command}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"evdet-model {args.command}: interrupted (Ctrl-C); its output was left as it was", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
