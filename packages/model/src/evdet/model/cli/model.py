"""``evdet-model``: model summary, prediction over representation shards, import of RVT weights, ONNX export.

Every subcommand prints ONE JSON object on stdout (docs/cli.md); errors are one line ``evdet-model <subcommand>:
error: ...`` on stderr, exit 2.

- ``evdet-model summary +experiment=NAME [overrides] [--all] [--table]``: parameters per part, multiply-accumulates
  per frame and feature-map shapes per stage as JSON (``--all``: every experiment, ``{"experiments": [...],
  "lstm_cells": [...]}``); ``--table`` prints the human-readable text instead (``--all``: one markdown table).
- ``evdet-model predict CHECKPOINT SHARDS --output DIR [--overwrite] [--streams N] [--device auto]
  [--confidence C] [--nms IOU]``: detections at label timestamps per recording (input of ``evdet-eval
  prophesee``). ``--output`` must be missing or empty; ``--overwrite`` replaces the files of an earlier predict run
  there (:mod:`evdet.model.inference.predict`). ``--streams`` (old spelling ``--batch``) < 1, a threshold outside
  [0, 1] or a ``--device`` this machine lacks (``cuda`` without CUDA) is one line naming the flag, exit 2, before
  anything is loaded or written. ``--checkpoint CKPT --shards DIR`` (the old spelling) are still accepted.
- ``evdet-model import-rvt FILE --model rvt_tiny|rvt_small|rvt_base [overrides] --output evdet.ckpt [--overwrite]``:
  weights of the reference RVT implementation (state_dict or Lightning ``.ckpt``) as an evdet checkpoint
  (:mod:`evdet.model.training.rvt_import`).
- ``evdet-model export CHECKPOINT --format onnx --output model.onnx [--height H --width W] [--overwrite]``: one
  streaming step (histogram and LSTM states in, decoded predictions and new states out) as an ONNX graph with the
  evdet settings in its metadata (:mod:`evdet.model.inference.onnx_export`, docs/onnx.md); prints one JSON object
  (path, opset, inputs / outputs with shapes, size_bytes, max_abs_diff of onnxruntime vs torch on a random step).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from evdet.data.cli_convention import (
    Parser,
    add_hidden_alias,
    fail,
    print_result,
    require_input,
)
from evdet.model.cli.flags import add_device_argument, resolve_device
from evdet.model.config import compose_checked, list_experiments, to_container
from evdet.model.inference.detect import check_run_flags
from evdet.model.inference.onnx_export import EXPORT_FORMATS, export_checkpoint
from evdet.model.inference.predict import predict_shards
from evdet.model.nn.summary import (
    format_lstm_table,
    format_markdown_table,
    format_summary,
    lstm_cell_counts,
    summarize,
)
from evdet.model.training.rvt_import import write_imported_checkpoint
from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

__all__ = ["build_parser", "main"]

TOOL = "evdet-model"


def _summary(args: argparse.Namespace, overrides: list[str]) -> int:
    # Configs are composed and validated first (evdet.model.config.ConfigError, a ValueError: one line naming the
    # key); dataset.path is not needed for a summary.
    if args.all:
        configs = [to_container(compose_checked([f"experiment={name}", *overrides], for_training=False))
                   for name in list_experiments()]
        summaries, cells = [summarize(config) for config in configs], lstm_cell_counts()
        if args.table:
            print(format_markdown_table(summaries))
            print("\nConvLSTM parameters per stage width (RVT-B widths):\n")
            print(format_lstm_table(cells))
        else:
            print_result({"experiments": summaries, "lstm_cells": cells})
        return 0
    result = summarize(to_container(compose_checked(overrides, for_training=False)))
    if args.table:
        print(format_summary(result))
    else:
        print_result(result)
    return 0


def _predict(args: argparse.Namespace, overrides: list[str]) -> int:
    if overrides:
        raise ValueError(f"predict takes no Hydra overrides (the checkpoint holds the config): {overrides}")
    require_input(args, "checkpoint", "CHECKPOINT", "--checkpoint")
    require_input(args, "shards", "SHARDS", "--shards")
    # The error names the spelling given (--batch is the old one of --streams).
    check_run_flags(**{"batch" if args.streams_flag == "--batch" else "streams": args.streams,
                       "confidence": args.confidence, "nms": args.nms})
    device = resolve_device(args.device)
    report = predict_shards(Path(args.checkpoint), Path(args.shards), args.output, batch_size=args.streams, device=device,
                            overwrite=args.overwrite, confidence_threshold=args.confidence, nms_threshold=args.nms)
    print_result({k: v for k, v in report.items() if k != "files"})
    return 0


def _import_rvt(args: argparse.Namespace, overrides: list[str]) -> int:
    report = write_imported_checkpoint(
        args.file, args.output, preset=args.model, overrides=overrides, overwrite=args.overwrite
    )
    print_result(report)
    return 0


def _export(args: argparse.Namespace, overrides: list[str]) -> int:
    if overrides:
        raise ValueError(f"export takes no Hydra overrides (the checkpoint holds the config): {overrides}")
    report = export_checkpoint(args.checkpoint, args.output, export_format=args.format, height=args.height,
                               width=args.width, overwrite=args.overwrite)
    print_result(report)
    return 0


_COMMANDS = {"summary": _summary, "predict": _predict, "import-rvt": _import_rvt, "export": _export}


class _Spelling(argparse.Action):
    """Store the value and which option string gave it (``dest + "_flag"``), so errors name the spelling used."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        setattr(namespace, self.dest + "_flag", option_string)


def build_parser() -> Parser:
    """The ``evdet-model`` parser (one-line usage errors, exit 2); Hydra overrides are the unknown arguments."""
    parser = Parser(prog=TOOL, description="Model summary, prediction over representation shards, import of RVT "
                                           "weights, ONNX export (one JSON object on stdout).")
    sub = parser.add_subparsers(dest="command", required=True)
    summary = sub.add_parser("summary", help="parameters, MACs and feature shapes of a config (JSON)",
                             usage="evdet-model summary [HYDRA_OVERRIDE ...] [--all] [--table]")
    summary.add_argument("--all", action="store_true", help="every experiment")
    summary.add_argument("--table", action="store_true",
                         help="print human-readable text (--all: one markdown table) instead of JSON")
    summary.add_argument("--json", action="store_true", help=argparse.SUPPRESS)  # the old flag: JSON is the default
    predict = sub.add_parser("predict", help="detections over shards at label timestamps",
                             usage="evdet-model predict CHECKPOINT SHARDS --output DIR [--overwrite] [--device DEVICE] "
                                   "[--streams N] [--confidence C] [--nms IOU]")
    # Positional inputs without type: argparse would convert the SUPPRESS default; the old flags fill them too.
    predict.add_argument("checkpoint", nargs="?", default=argparse.SUPPRESS, metavar="CHECKPOINT",
                         help="evdet checkpoint (local or s3://)")
    predict.add_argument("shards", nargs="?", default=argparse.SUPPRESS, metavar="SHARDS",
                         help="directory of one split's shards")
    add_hidden_alias(predict, "--checkpoint", "checkpoint")
    add_hidden_alias(predict, "--shards", "shards")
    predict.add_argument("--output", type=Path, required=True,
                         help="directory for <name>.npy detections: missing or empty, or an earlier predict output "
                              "with --overwrite")
    predict.add_argument("--overwrite", action="store_true",
                         help="replace the outputs of an earlier evdet-model predict run in --output (never other "
                              "files)")
    add_device_argument(predict)
    predict.add_argument("--streams", type=int, default=None, action=_Spelling,
                         help="recordings streamed in parallel (the model's batch), >= 1 (default: the run's "
                              "batch_size.eval)")
    predict.add_argument("--confidence", type=float, default=None,
                         help="minimum detection score in [0, 1] (default: the run's validation.confidence_threshold)")
    predict.add_argument("--nms", type=float, default=None,
                         help="NMS IoU threshold in [0, 1] (default: the run's validation.nms_threshold)")
    add_hidden_alias(predict, "--batch", "streams", type=int, action=_Spelling)  # the old spelling
    predict.set_defaults(streams_flag="--streams")
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
    return parser


def main(argv: list[str] | None = None) -> int:
    """Console entry point; errors print one line ``evdet-model <subcommand>: error: ...`` on stderr, exit 2."""
    args, overrides = build_parser().parse_known_args(argv)
    try:
        return _COMMANDS[args.command](args, overrides)
    except (HydraException, OmegaConfBaseException, FileNotFoundError, FileExistsError, ValueError) as exc:
        return fail(f"{TOOL} {args.command}", exc)
    except KeyboardInterrupt:
        print(f"{TOOL} {args.command}: interrupted (Ctrl-C); its output was left as it was", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
