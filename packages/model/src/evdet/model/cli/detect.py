"""``evdet-detect CHECKPOINT RECORDING... --output DIR``: parse, run :func:`evdet.model.inference.detect.detect_recordings`,
print ONE JSON object (docs/cli.md; the outputs are described in :mod:`evdet.model.inference.detect`).

stdout: ``{"output": DIR, "detections": total, "recordings": [report, ...]}`` (each report as written to
``NAME_detect.json``, without its PNG list). Flags are checked before anything is loaded or written: ``--device``
(default ``auto``) this machine lacks, ``--max-windows`` / ``--max-images`` out of range, ``--confidence`` /
``--nms`` outside [0, 1] are one line ``evdet-detect: error: ...`` naming the flag, exit 2; a non-empty output
folder likewise. Ctrl-C: exit 130, the output folder left as it was.
"""

from __future__ import annotations

import sys
from pathlib import Path

from evdet.data.cli_convention import Parser, fail, print_result
from evdet.data.readers import RecordingError
from evdet.model.cli.flags import add_device_argument, resolve_device
from evdet.model.inference.detect import check_run_flags, detect_recordings
from evdet.model.inference.detect_engines import ENGINES, resolve_engine
from evdet.model.inference.detection_video import (
    available_video_encoders,
    choose_video_format,
)

__all__ = ["build_parser", "main"]

TOOL = "evdet-detect"


def build_parser() -> Parser:
    """The ``evdet-detect`` parser (one-line usage errors, exit 2)."""
    parser = Parser(prog=TOOL, description="Run a trained detector over raw event recordings, streaming with its "
                                           "recurrent state (one JSON object on stdout).")
    parser.add_argument("checkpoint", type=Path, metavar="CHECKPOINT",
                        help="Lightning checkpoint written by evdet-train, or an .onnx file of evdet-model export")
    parser.add_argument("recordings", type=Path, nargs="+", metavar="RECORDING",
                        help=".dat, .h5, .aedat4 or .raw (EVT 2.0 / 3.0) event recordings")
    parser.add_argument("--output", type=Path, required=True,
                        help="output directory: missing or empty, or an earlier evdet-detect output with --overwrite")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the outputs of an earlier evdet-detect run in --output (never other files)")
    add_device_argument(parser)
    parser.add_argument("--confidence", type=float, default=0.3, help="minimum detection score in [0, 1] (0.3)")
    parser.add_argument("--nms", type=float, default=None, help="NMS IoU threshold in [0, 1] (default: the run's)")
    parser.add_argument("--max-images", type=int, default=8, help="PNG overlays per recording, >= 0 (default 8)")
    parser.add_argument("--max-windows", type=int, default=None, help="stop after N >= 1 windows")
    parser.add_argument("--video", action="store_true",
                        help="also write NAME_detections.mp4: the overlay of every window, real-time speed")
    parser.add_argument("--video-format", default=None,
                        help="mp4 or gif (default: mp4 when PyAV has an H.264 or MPEG-4 encoder, else gif)")
    parser.add_argument("--engine", choices=ENGINES, default=None,
                        help="torch (checkpoints) or onnxruntime (.onnx files); default: the model file's")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Console entry point ``evdet-detect`` (module docstring).

    Returns:
        0 on success; 2 on an input error, a flag out of range or a non-empty output folder (one line on stderr,
        flags and the folder checked before anything is loaded or written); 130 after Ctrl-C (the output folder is
        left as it was).
    """
    args = build_parser().parse_args(argv)
    try:
        check_run_flags(confidence=args.confidence, nms=args.nms, max_images=args.max_images,
                        max_windows=args.max_windows)
        engine = resolve_engine(args.checkpoint, args.engine)
        device = resolve_device(args.device, engine)
        if args.video_format is not None and not args.video:
            raise ValueError(f"--video-format {args.video_format}: only with --video (write a detection video)")
        video = choose_video_format(args.video_format, available_video_encoders()) if args.video else None
        reports = detect_recordings(args.checkpoint, args.recordings, args.output, overwrite=args.overwrite,
                                    confidence_threshold=args.confidence, nms_threshold=args.nms,
                                    max_images=args.max_images, max_windows=args.max_windows, device=device,
                                    video=video, engine=engine)
    except (RecordingError, FileNotFoundError, ValueError) as exc:
        return fail(TOOL, exc)
    except KeyboardInterrupt:
        print(f"{TOOL}: interrupted (Ctrl-C); {args.output} was left as it was", file=sys.stderr)
        return 130
    print_result({"output": str(args.output), "detections": sum(r["detections"] for r in reports),
                  "recordings": [{k: v for k, v in r.items() if k != "images"} for r in reports]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
