"""Run an experiment pipeline on this machine with kfp.local (the main job: ``make run``).

Set-up, then the same pipeline a cluster runs, executed by kfp.local's SubprocessRunner in this Python
environment (no containers, no network):

1. a synthetic eTraM-layout training set (``evdet-data synth``; deterministic from ``--seed``), made once;
2. the pipeline preprocess -> train (``profile=local``) -> evaluate -> detect on the real recordings in
   ``data/real``;
3. a one-screen summary: where the results are, the AP table, the number of detections, the elapsed time.

Usage: ``python pipelines/run_local.py plain_lstm_baseline [--workdir local_store] [--override KEY=VALUE ...]``.
"""

import argparse
import importlib
import json
import os
import subprocess
import sys
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REAL_RECORDINGS = [ROOT / "data" / "real" / "gen4.dat", ROOT / "data" / "real" / "davis346.aedat4"]


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def make_synthetic_dataset(raw_dir: Path, seed: int, duration_s: float) -> None:
    """Generate the synthetic training set once (kept between runs; delete the folder to regenerate)."""
    if (raw_dir / "README.md").is_file():
        print(f"synthetic dataset: reusing {raw_dir}")
        return
    cmd = [_bin("evdet-data"), "synth", "--output", str(raw_dir), "--seed", str(seed), "--duration-s", str(duration_s)]
    print("synthetic dataset:", " ".join(cmd))
    subprocess.run(cmd, check=True)


def print_summary(store: Path, experiment: str, run_id: str, elapsed_s: float) -> None:
    """Print where the results are, the AP table and the detection counts."""
    prefix = store / "experiments" / experiment / run_id
    results = json.loads((prefix / "experiment_results.json").read_text())
    metrics = results["metrics"]
    print("\n" + "=" * 72)
    print(f"evdet main job: experiment {experiment}, run {run_id} ({elapsed_s / 60:.1f} min)")
    print(f"results: {prefix}")
    print(f"  checkpoints: {prefix / 'checkpoints'}")
    print(f"  metrics:     {prefix / 'experiment_results.json'}")
    print(f"  report:      {prefix / 'README.md'} (figures in confusion_matrices/, plots/)")
    print(f"  detections:  {prefix / 'detect'}")
    print("-" * 72)
    protocol = metrics["protocol"]
    print(f"test split (synthetic), Prophesee protocol '{protocol['name']}' (+-{protocol['time_tolerance_us'] // 1000}"
          f" ms, boxes >= {protocol['min_box_diag_px']:g} px diagonal / {protocol['min_box_side_px']:g} px side at "
          f"{protocol['width']}x{protocol['height']}), COCO AP; headline: {metrics['headline']}")
    keys = ("AP", "AP_50", "AP_75", "AP_S", "AP_M", "AP_L")
    print("  " + f"{'':>15}" + "  ".join(f"{k:>6}" for k in keys))
    for kind in ("class_agnostic", "class_aware"):
        row = metrics[kind]
        print("  " + f"{kind:>15}" + "  ".join(f"{row[k]:6.3f}" if row.get(k) is not None else f"{'n/a':>6}"
                                              for k in keys))
    per_class = metrics.get("per_class_AP", {})
    if per_class:
        print("  per class: " + ", ".join(f"{k} {v:.3f}" if v is not None else f"{k} n/a" for k, v in per_class.items()))
    print("-" * 72)
    for report in sorted((prefix / "detect").glob("*_detect.json")):
        r = json.loads(report.read_text())
        lat = r["latency_ms_per_window"]
        print(
            f"detect {Path(r['recording']).name}: {r['detections']} detections in {r['windows']} windows of 50 ms "
            f"({r['width']}x{r['height']}, scale 1/{r['scale_factor']}); latency per window "
            f"p50 {lat['p50']:.1f} ms, p95 {lat['p95']:.1f} ms"
        )
    print("=" * 72)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pipeline", help="pipeline file name in pipelines/, e.g. plain_lstm_baseline")
    parser.add_argument("--workdir", type=Path, default=ROOT / "local_store", help="local store and work area")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic dataset")
    parser.add_argument("--duration-s", type=float, default=4.0, help="length of each synthetic recording")
    parser.add_argument("--override", action="append", default=[], help="extra Hydra override (repeatable)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from pipeline_files import experiment_pipelines  # short name -> experiment, read from pipelines/*.py

    experiments = experiment_pipelines()
    if args.pipeline not in experiments:
        parser.error(f"no experiment pipeline {args.pipeline!r} in pipelines/ (one of: {', '.join(experiments)})")

    start = time.monotonic()
    workdir = args.workdir.resolve()
    # Components call the console scripts; make this environment's scripts the ones found.
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    raw_dir = workdir / "raw" / f"synthetic-seed{args.seed}"
    make_synthetic_dataset(raw_dir, args.seed, args.duration_s)

    from kfp import local  # noqa: E402  (kfp is imported only after set-up so errors above stay short)

    from pipeline_builder import LOCAL_DEFAULTS  # noqa: E402

    module = importlib.import_module(args.pipeline)
    pipeline = getattr(module, args.pipeline)
    warnings.filterwarnings("ignore", message=".*custom or non-Python base image.*")
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(workdir / "pipeline_root"))
    run_id = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    store = workdir / "store"
    pipeline(
        raw_data_uri=str(raw_dir),
        overrides=[*LOCAL_DEFAULTS["overrides"], *args.override],
        recordings=[str(p) for p in REAL_RECORDINGS],
        store_uri=str(store),
        run_id=run_id,
        class_names=LOCAL_DEFAULTS["class_names"],
        preprocess_args=LOCAL_DEFAULTS["preprocess_args"],
        eval_split=LOCAL_DEFAULTS["eval_split"],
        metrics_addr=LOCAL_DEFAULTS["metrics_addr"],
    )
    print_summary(store, experiments[args.pipeline], run_id, time.monotonic() - start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
