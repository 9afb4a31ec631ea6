"""``evdet-data``: command-line entry point of the data package.

Subcommands:

* ``evdet-data info FILE`` — print ``json.dumps`` of :func:`evdet.data.info.recording_info` (format, sensor
  size, event count, first/last timestamp).
* ``evdet-data synth OUT [--seed N --train N --val N --test N --duration-s S --width W --height H ...]`` — write
  the SYNTHETIC eTraM-layout dataset of :func:`evdet.data.synthetic.generate_dataset`; prints its summary.
* ``evdet-data preprocess SRC OUT [--no-downsample --window-us US --bins B --clip C --splits S ...]`` — write
  representation shards (:func:`evdet.data.preprocess.preprocess_dataset`); prints the report as JSON.
* ``evdet-data store put --store URI LOCAL KEY`` — copy a file or a directory tree into a store
  (:mod:`evdet.data.storage`: a local path, ``file://`` or ``s3://bucket/prefix``) at ``KEY``; prints the written
  URIs as JSON.
* ``evdet-data store get --store URI KEY LOCAL`` — copy one object, or every object below ``KEY/``, to ``LOCAL``
  (skipping files already there with the same size/etag); prints the counts as JSON.
* ``evdet-data store ls --store URI [PREFIX]`` — list objects (key, size in bytes) as JSON.

For ``s3://`` stores the endpoint and credentials come from ``MINIO_ENDPOINT`` / ``MINIO_ACCESS_KEY`` /
``MINIO_SECRET_KEY`` / ``MINIO_SECURE`` or the mounted Secret (:mod:`evdet.data.s3_credentials`), never from flags.

Errors in the input (a ``ValueError`` such as ``RecordingError``, ``LabelError``, ``PreprocessError``) or a
missing file (``OSError``) print one line ``evdet-data: error: ...`` on stderr and exit with code 2, without a
traceback.
"""

from __future__ import annotations

import argparse
import json
import sys

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser with the ``info``, ``synth``, ``preprocess`` and ``store`` subcommands."""
    parser = argparse.ArgumentParser(prog="evdet-data", description="evdet event data tools")
    sub = parser.add_subparsers(dest="command", required=True)

    info = sub.add_parser("info", help="print a recording's summary as JSON")
    info.add_argument("file", help="recording (.dat, _td.h5/.hdf5, .aedat4)")

    synth = sub.add_parser("synth", help="write the SYNTHETIC eTraM-layout dataset")
    synth.add_argument("out", help="output folder")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--train", type=int, default=2, help="train sequences")
    synth.add_argument("--val", type=int, default=1, help="val sequences")
    synth.add_argument("--test", type=int, default=1, help="test sequences")
    synth.add_argument("--duration-s", type=float, default=2.0, help="seconds per sequence")
    synth.add_argument("--width", type=int, default=640, help="sensor width (px)")
    synth.add_argument("--height", type=int, default=360, help="sensor height (px)")
    synth.add_argument("--label-hz", type=float, default=20.0, help="label rate (Hz)")
    synth.add_argument("--frame-dt-us", type=int, default=2_000, help="rendering step (µs)")

    pre = sub.add_parser("preprocess", help="recordings + labels -> representation shards")
    pre.add_argument("src", help="dataset root with one folder per split (eTraM layout)")
    pre.add_argument("out", help="output root for <split>/<name>.h5 shards")
    pre.add_argument("--no-downsample", action="store_true", help="keep the sensor resolution")
    pre.add_argument("--window-us", type=int, default=50_000, help="window length (µs)")
    pre.add_argument("--bins", type=int, default=10, help="time bins per polarity")
    pre.add_argument("--clip", type=int, default=10, help="count clip value")
    pre.add_argument("--splits", nargs="+", default=["train", "val", "test"], help="split folders")
    pre.add_argument("--class-map", default="experiment8", help="class map name")
    pre.add_argument("--min-box-side-px", type=float, default=1.0,
                     help="drop boxes with a side below this after scaling/cropping (representation px)")
    pre.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    store = sub.add_parser("store", help="copy run outputs to and from a store (local path or s3://bucket/prefix)")
    store_sub = store.add_subparsers(dest="store_command", required=True)
    store_help = "store URI (a local path, file:// URI or s3://bucket/prefix)"
    put = store_sub.add_parser("put", help="copy a file or directory to KEY")
    put.add_argument("--store", required=True, help=store_help)
    put.add_argument("local", help="file or directory to copy")
    put.add_argument("key", help="destination key, e.g. experiments/<experiment>/<run_id>/experiment_results.json")
    get = store_sub.add_parser("get", help="copy the object KEY (or every object below KEY/) to LOCAL")
    get.add_argument("--store", required=True, help=store_help)
    get.add_argument("key", help="object key, or a prefix ending in / for a tree")
    get.add_argument("local", help="destination file (one object) or folder (a prefix)")
    ls = store_sub.add_parser("ls", help="list objects below PREFIX")
    ls.add_argument("--store", required=True, help=store_help)
    ls.add_argument("prefix", nargs="?", default="", help="key prefix (default: everything)")
    return parser


def _run(args: argparse.Namespace) -> dict:
    if args.command == "info":
        from evdet.data.info import recording_info

        return recording_info(args.file)
    if args.command == "store":
        return _run_store(args)
    if args.command == "synth":
        from evdet.data.synthetic import generate_dataset

        return generate_dataset(
            args.out,
            seed=args.seed,
            splits={"train": args.train, "val": args.val, "test": args.test},
            duration_s=args.duration_s,
            width=args.width,
            height=args.height,
            label_hz=args.label_hz,
            frame_dt_us=args.frame_dt_us,
        )
    from evdet.data.preprocess import preprocess_dataset

    return preprocess_dataset(
        args.src,
        args.out,
        downsample=not args.no_downsample,
        window_us=args.window_us,
        bins=args.bins,
        clip=args.clip,
        splits=tuple(args.splits),
        class_map=args.class_map,
        progress=not args.no_progress,
        min_box_side_px=args.min_box_side_px,
    )


def _run_store(args: argparse.Namespace) -> dict:
    from evdet.data.storage import download_prefix, open_store, put_path

    store = open_store(args.store)
    if args.store_command == "put":
        return {"written": put_path(store, args.local, args.key)}
    if args.store_command == "ls":
        return {"objects": [{"key": o.key, "size": o.size} for o in store.objects(args.prefix)]}
    if args.key.endswith("/"):
        return download_prefix(store, args.key, args.local)
    return {"written": [str(store.get_file(args.key, args.local))]}


def main(argv: list[str] | None = None) -> int:
    """Run ``evdet-data`` with ``argv`` (default ``sys.argv[1:]``); print the result as one line of JSON on stdout.

    Returns:
        0 on success, 2 on an input error (one line on stderr). Usage errors exit with argparse's code 2.
    """
    args = build_parser().parse_args(argv)
    try:
        result = _run(args)
    except (ValueError, OSError) as exc:
        message = " ".join(str(exc).split())
        print(f"evdet-data: error: {message}", file=sys.stderr)
        return 2
    print(json.dumps(result))  # one line: pipeline steps read the last stdout line
    return 0


if __name__ == "__main__":
    sys.exit(main())
