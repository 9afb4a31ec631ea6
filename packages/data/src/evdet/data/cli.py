"""``evdet-data``: command-line entry point of the data package.

Subcommands:

* ``evdet-data info FILE`` — print ``json.dumps`` of :func:`evdet.data.info.recording_info` (format, sensor
  size, event count, first/last timestamp).
* ``evdet-data synth --output OUT [--seed N --train N --val N --test N --duration-s S --width W --height H --label-hz 30|60
  --label-jitter-us US --no-special-boxes --overwrite ...]`` — write the SYNTHETIC eTraM-layout dataset of
  :func:`evdet.data.synthetic.generate_dataset` (1280x720, 30 Hz labels off any 50 ms grid, official eTraM class
  ids); prints its summary. ``OUT`` must be missing or empty; ``--overwrite`` replaces the files of an earlier
  ``evdet-data synth`` run there (its manifest; :mod:`evdet.data.output_folder`), never other files.
* ``evdet-data preprocess SRC --output OUT [--splits S ... --class-names etram --windows label|grid
  --on-bad-events error|drop --strict --window-us US --bins B --clip C --downsample-factor K
  --downsample nearest_exact|sum --time-bins stretched|fixed --workers N]`` — write representation shards with the
  reference protocol (:func:`evdet.data.preprocess.preprocess_dataset`; a rerun reuses only shards whose source
  fingerprint matches, redoes those whose recording or labels changed); prints the report as JSON. ``--workers N``
  preprocesses N recordings at once, one process each (default 1). ``--strict``: files that do
  not pair up (labels without recording, recording without labels, misnamed recording) are an error, not a warning.
* ``evdet-data histogram RECORDING --end-us T1,T2,... --output OUT.npy [histogram options]`` — the stored
  representation of the windows ending at those times, ``(N, 2*bins, H/k, W/k)`` uint8
  (:func:`evdet.data.histograms.write_histograms`).
* ``evdet-data label-stats DIR [--class-names etram]`` — per class id of the ``<name>_bbox.npy`` files below
  ``DIR``: box count, median w, h and aspect ratio w/h (px), so the naming that fits the data can be checked
  (:func:`evdet.data.label_stats.label_stats`).
* ``evdet-data store put --store URI LOCAL KEY`` — copy a file or a directory tree into a store
  (:mod:`evdet.data.storage`: a local path, ``file://`` or ``s3://bucket/prefix``) at ``KEY``; prints the written
  URIs as JSON.
* ``evdet-data store get --store URI KEY LOCAL`` — copy one object, or every object below ``KEY/``, to ``LOCAL``
  (skipping files already there with the same size/etag); prints the counts as JSON.
* ``evdet-data store ls --store URI [PREFIX]`` — list objects (key, size in bytes) as JSON.

For ``s3://`` stores the endpoint and credentials come from ``MINIO_ENDPOINT`` / ``MINIO_ACCESS_KEY`` /
``MINIO_SECRET_KEY`` / ``MINIO_SECURE`` or the mounted Secret (:mod:`evdet.data.s3_credentials`), never from flags.

Errors in the input (a ``ValueError`` such as ``RecordingError``, ``LabelError``, ``PreprocessError``), a numeric
flag out of range (checked before anything is read or written: ``--train -1``, ``--bins 0``, ...) or a missing file
(``OSError``) print one line ``evdet-data: error: ...`` on stderr and exit with code 2, without a traceback.

Ctrl-C (SIGINT) or SIGTERM stops any subcommand with one line ``evdet-data: interrupted by SIGINT ...`` and exit code
130 (SIGTERM: 143), without a traceback. ``preprocess`` polls the signal once per window (in every worker with
``--workers``), so it always stops and removes its unfinished ``.tmp`` shards (finished shards stay; a rerun
continues); ``synth`` leaves its output folder as it was (it writes into a staging folder first).

The command line follows docs/cli.md (:mod:`evdet.data.cli_convention`): every result is ONE JSON object on stdout,
usage errors are one line too. ``synth OUT`` and ``preprocess SRC OUT`` (the output folder as a positional) are still
accepted.
"""

from __future__ import annotations

import argparse
import logging
import math
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from evdet.data.cli_convention import Parser, fail, print_result

__all__ = ["NUMERIC_FLAGS", "build_parser", "check_numeric_flags", "main"]

#: Numeric flags checked before anything runs: argparse dest -> (flag, smallest, largest or None, what is expected).
NUMERIC_FLAGS: dict[str, tuple[str, float, float | None, str]] = {
    "seed": ("--seed", 0, None, "a non-negative integer"),
    "train": ("--train", 0, None, "a non-negative number of sequences"),
    "val": ("--val", 0, None, "a non-negative number of sequences"),
    "test": ("--test", 0, None, "a non-negative number of sequences"),
    "duration_s": ("--duration-s", math.ulp(0.0), None, "a positive duration in seconds"),
    "width": ("--width", 1, 65535, "a sensor width in px, 1..65535"),
    "height": ("--height", 1, 65535, "a sensor height in px, 1..65535"),
    "label_jitter_us": ("--label-jitter-us", 0, 900, "a jitter bound in µs, 0..900"),
    "frame_dt_us": ("--frame-dt-us", 1, None, "a positive rendering step in µs"),
    "window_us": ("--window-us", 1, None, "a positive window length in µs"),
    "bins": ("--bins", 1, None, "a positive number of time bins"),
    "clip": ("--clip", 0, 255, "a count clip value 0..255"),
    "downsample_factor": ("--downsample-factor", 1, None, "a positive integer divisor (1: none)"),
    "workers": ("--workers", 1, None, "a positive number of worker processes"),
}


def check_numeric_flags(args: argparse.Namespace) -> None:
    """Check the numeric flags of :data:`NUMERIC_FLAGS` that ``args`` holds (before anything is read or written).

    Raises:
        ValueError: ``<flag>: expected <what>, got <value>`` for the first flag out of range (or not finite).
    """
    for dest, (flag, low, high, what) in NUMERIC_FLAGS.items():
        value = getattr(args, dest, None)
        if value is None:
            continue
        if not math.isfinite(value) or value < low or (high is not None and value > high):
            raise ValueError(f"{flag}: expected {what}, got {value!r}")


class _Signals:
    """Ctrl-C (SIGINT) and SIGTERM while a subcommand runs: remembered in :attr:`received`; raised as
    ``KeyboardInterrupt`` at once unless :attr:`polled` (then the running code polls :meth:`should_stop`, so that
    the exception is never raised inside a finaliser or weakref callback, where Python would swallow it)."""

    def __init__(self, polled: bool) -> None:
        self.polled = polled
        self.received: int | None = None

    def should_stop(self) -> bool:
        """True once a signal was received."""
        return self.received is not None

    def handle(self, signum: int, frame) -> None:
        first = self.received is None
        self.received = signum if first else self.received
        if not self.polled:
            raise KeyboardInterrupt


@contextmanager
def _signals(polled: bool) -> Iterator[_Signals]:
    state = _Signals(polled)
    if threading.current_thread() is not threading.main_thread():  # handlers can only be set there
        yield state
        return
    previous = {sig: signal.signal(sig, state.handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield state
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser with the ``info``, ``synth``, ``preprocess``, ``histogram``, ``label-stats`` and ``store``
    subcommands."""
    parser = Parser(prog="evdet-data", description="evdet event data tools (one JSON object on stdout)")
    sub = parser.add_subparsers(dest="command", required=True)

    info = sub.add_parser("info", help="print a recording's summary as JSON")
    info.add_argument("file", help="recording (.dat, _td.h5/.hdf5, .aedat4, .raw EVT 2.0/3.0)")

    synth = sub.add_parser("synth", help="write the SYNTHETIC eTraM-layout dataset",
                           usage="evdet-data synth --output OUT [options]")
    _add_output_folder(synth, "output folder (missing or empty; an earlier evdet-data synth output with --overwrite)")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--train", type=int, default=2, help="train sequences")
    synth.add_argument("--val", type=int, default=1, help="val sequences")
    synth.add_argument("--test", type=int, default=1, help="test sequences")
    synth.add_argument("--duration-s", type=float, default=2.0, help="seconds per sequence")
    synth.add_argument("--width", type=int, default=1280, help="sensor width (px; eTraM: 1280)")
    synth.add_argument("--height", type=int, default=720, help="sensor height (px; eTraM: 720)")
    synth.add_argument("--label-hz", type=int, default=30, choices=(30, 60), help="label rate (Hz), as eTraM")
    synth.add_argument("--label-jitter-us", type=int, default=900,
                       help="per-label timestamp jitter bound (µs, uniform in [-J, J], 0..900)")
    synth.add_argument("--frame-dt-us", type=int, default=2_000, help="rendering step (µs)")
    synth.add_argument("--no-special-boxes", action="store_true",
                       help="leave out the faulty boxes (side < 5 px, zero width, out of frame, over-wide)")
    synth.add_argument("--overwrite", action="store_true",
                       help="replace the files of an earlier evdet-data synth run in OUT (never other files)")

    pre = sub.add_parser("preprocess", help="recordings + labels -> representation shards (reference protocol)",
                         usage="evdet-data preprocess SRC --output OUT [options]")
    pre.add_argument("src", help="dataset root with one folder per split (eTraM layout)")
    _add_output_folder(pre, "output root for <split>/<name>.h5 shards")
    pre.add_argument("--splits", nargs="+", default=["train", "val", "test"], help="split folders")
    pre.add_argument("--class-names", default="etram",
                     help="names of the raw label ids in id order: a dataset name (etram, etram_cls8_sample) or a "
                          "comma-separated list (default: etram, the official eTraM classes)")
    pre.add_argument("--windows", choices=("label", "grid"), default="label",
                     help="label: windows end at the ~10 Hz object frames (reference, needs 30/60 Hz labels); "
                          "grid: a fixed 50 ms grid, at most one label frame per window (option)")
    pre.add_argument("--on-bad-events", choices=("error", "drop"), default="error",
                     help="events outside the sensor or going back in time: stop with an error (default) or drop "
                          "and count them")
    pre.add_argument("--strict", action="store_true",
                     help="files that do not pair up (labels without recording, recording without labels, misnamed "
                          "recording) are an error instead of one warning")
    _add_histogram_options(pre)
    pre.add_argument("--workers", type=int, default=1,
                     help="recordings preprocessed at once, one process each (default 1)")
    pre.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    hist = sub.add_parser("histogram", help="stacked histograms of a recording for given window end times")
    hist.add_argument("recording", help="recording (.dat, _td.h5/.hdf5, .aedat4, .raw)")
    hist.add_argument("--end-us", required=True, help="window end times in µs, comma-separated (output keeps the order)")
    hist.add_argument("--output", required=True, help="output .npy: (N, 2*bins, H/k, W/k) uint8")
    hist.add_argument("--on-bad-events", choices=("error", "drop"), default="error",
                      help="events outside the sensor or going back in time: error (default) or drop")
    hist.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    _add_histogram_options(hist)

    stats = sub.add_parser("label-stats", help="per class id: box count and median w, h, aspect ratio (px)")
    stats.add_argument("folder", help="a folder of <name>_bbox.npy label files (searched recursively)")
    stats.add_argument("--class-names", default=None,
                       help="dataset name or comma-separated names to print beside the ids (e.g. etram)")

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


def _add_output_folder(parser: argparse.ArgumentParser, help_text: str) -> None:
    """``--output OUT`` (required, checked in :func:`main`); the old positional ``OUT`` stays accepted, hidden."""
    parser.add_argument("--output", dest="out", metavar="OUT", default=argparse.SUPPRESS, help=f"required: {help_text}")
    parser.add_argument("out", nargs="?", default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def _check_output_given(args: argparse.Namespace) -> None:
    """``synth`` / ``preprocess`` need ``--output`` (or the old positional ``OUT``).

    Raises:
        ValueError: ``--output: missing; expected the output folder``.
    """
    if args.command in ("synth", "preprocess") and getattr(args, "out", None) is None:
        raise ValueError(f"--output: missing; expected the output folder of evdet-data {args.command}")


def _run(args: argparse.Namespace, should_stop=None) -> dict:
    if args.command == "info":
        from evdet.data.info import recording_info

        return recording_info(args.file)
    if args.command == "store":
        return _run_store(args)
    if args.command == "synth":
        return _run_synth(args, should_stop)
    if args.command == "histogram":
        return _run_histogram(args)
    if args.command == "label-stats":
        from evdet.data.label_stats import label_stats

        return label_stats(args.folder, args.class_names)
    from evdet.data.preprocess import PreprocessOptions, preprocess_dataset

    options = PreprocessOptions(_histogram_config(args), windows=args.windows, class_names=args.class_names,
                                on_bad_events=args.on_bad_events)
    return preprocess_dataset(args.src, args.out, splits=tuple(args.splits), options=options,
                              progress=not args.no_progress, strict=args.strict, should_stop=should_stop,
                              workers=args.workers)


def _run_synth(args: argparse.Namespace, should_stop=None) -> dict:
    """``synth`` into a staging folder, moved into ``OUT`` when complete (:mod:`evdet.data.output_folder`); a signal
    received meanwhile (even one whose ``KeyboardInterrupt`` was swallowed) discards the staging folder."""
    from evdet.data.output_folder import OutputFolder
    from evdet.data.synthetic import generate_dataset

    with OutputFolder(args.out, "evdet-data synth", overwrite=args.overwrite) as output:
        summary = generate_dataset(
            output.staging,
            seed=args.seed,
            splits={"train": args.train, "val": args.val, "test": args.test},
            duration_s=args.duration_s,
            width=args.width,
            height=args.height,
            label_hz=args.label_hz,
            label_jitter_us=args.label_jitter_us,
            frame_dt_us=args.frame_dt_us,
            special_boxes=not args.no_special_boxes,
        )
        if should_stop is not None and should_stop():
            raise KeyboardInterrupt
    summary["out_dir"] = str(args.out)
    return summary


def _add_histogram_options(parser: argparse.ArgumentParser) -> None:
    """Stacked-histogram options shared by ``preprocess`` and ``histogram`` (defaults: the reference's)."""
    parser.add_argument("--window-us", type=int, default=50_000, help="window length (µs)")
    parser.add_argument("--bins", type=int, default=10, help="time bins per polarity")
    parser.add_argument("--clip", type=int, default=10, help="count clip value")
    parser.add_argument("--downsample-factor", type=int, default=2, help="integer resolution divisor (1: none)")
    parser.add_argument("--downsample", choices=("nearest_exact", "sum"), default="nearest_exact",
                        help="nearest_exact: keep one sensor pixel per cell (reference); sum: add the block (option)")
    parser.add_argument("--time-bins", choices=("stretched", "fixed"), default="stretched",
                        help="stretched: bins span the window's events (reference); fixed: equal slices (option)")


def _histogram_config(args: argparse.Namespace):
    from evdet.data.representation import HistogramConfig

    return HistogramConfig(window_us=args.window_us, bins=args.bins, clip=args.clip,
                           downsample_factor=args.downsample_factor, downsample=args.downsample,
                           time_bins=args.time_bins)


def _parse_end_times(text: str) -> list[int]:
    try:
        ends = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--end-us: expected comma-separated integer times in µs, got {text!r}") from None
    if not ends:
        raise ValueError(f"--end-us: expected at least one window end time in µs, got {text!r}")
    return ends


def _run_histogram(args: argparse.Namespace) -> dict:
    from pathlib import Path

    from evdet.data.histograms import write_histograms

    return write_histograms(args.recording, _parse_end_times(args.end_us), Path(args.output), _histogram_config(args),
                            on_bad_events=args.on_bad_events, overwrite=args.overwrite)


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


_INTERRUPTED = {
    "preprocess": "stopped; the unfinished shard (.tmp) was removed, finished shards are kept and a rerun continues",
    "synth": "stopped; the output folder was left as it was",
}


def main(argv: list[str] | None = None) -> int:
    """Run ``evdet-data`` with ``argv`` (default ``sys.argv[1:]``); print the result as one line of JSON on stdout.

    Returns:
        0 on success; 2 on an input error or a numeric flag out of range (one line on stderr, nothing read or
        written for a flag); 130 after Ctrl-C (SIGINT), 143 after SIGTERM (one line, no traceback). Usage errors
        exit with argparse's code 2.
    """
    args = build_parser().parse_args(argv)
    logger = logging.getLogger("evdet.data")
    if not logger.handlers:  # warnings (skipped recordings, dropped events) go to stderr, one line each
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("evdet-data: warning: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.WARNING)
    with _signals(polled=args.command == "preprocess") as signals:
        try:
            _check_output_given(args)
            check_numeric_flags(args)
            result = _run(args, should_stop=signals.should_stop)
        except KeyboardInterrupt:
            result = None
            signals.received = signals.received or signal.SIGINT
        except (ValueError, OSError) as exc:
            if signals.received is None:
                return fail("evdet-data", exc)
    if signals.received is not None:  # also when the KeyboardInterrupt was swallowed somewhere
        name = signal.Signals(signals.received).name
        what = _INTERRUPTED.get(args.command, "stopped")
        print(f"evdet-data: interrupted by {name}{' (Ctrl-C)' if name == 'SIGINT' else ''}; {args.command} {what}",
              file=sys.stderr)
        return 128 + int(signals.received)
    print_result(result)  # one line: pipeline steps read the last stdout line
    return 0


if __name__ == "__main__":
    sys.exit(main())
