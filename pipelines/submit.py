"""Compile an experiment pipeline and submit it to Kubeflow Pipelines through the KFP API (``make submit``).

Equivalent to ``kfp dsl compile --py pipelines/<name>.py --output build/pipelines/<name>.yaml`` followed by
``kfp --endpoint HOST run create -e EXPERIMENT -r RUN -f build/pipelines/<name>.yaml``; prints the run's URL.

Usage: ``python pipelines/submit.py plain_lstm_baseline --host http://kfp.example:8080
--arg raw_data_uri=s3://evdet/raw/etram [--arg store_uri=s3://evdet] [--experiment evdet] [--run NAME]``.
List-valued parameters take JSON: ``--arg 'overrides=["batch_size.train=6"]'``.
"""

import argparse
import importlib
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent


def parse_args(items: list[str]) -> dict:
    """``KEY=VALUE`` strings -> pipeline arguments (VALUE parsed as JSON when it is valid JSON, else a string).

    Raises:
        ValueError: an item without ``=`` (names it).
    """
    arguments = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--arg {item!r}: expected KEY=VALUE")
        try:
            arguments[key] = json.loads(value)
        except json.JSONDecodeError:
            arguments[key] = value
    return arguments


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pipeline", help="pipeline file name in pipelines/, e.g. plain_lstm_baseline")
    parser.add_argument("--host", required=True, help="KFP API endpoint, e.g. http://localhost:8080")
    parser.add_argument("--experiment", default="evdet", help="KFP experiment name (default evdet)")
    parser.add_argument("--run", default=None, help="run name (default: <pipeline>-<UTC time>)")
    parser.add_argument("--arg", action="append", default=[], help="pipeline argument KEY=VALUE (repeatable)")
    parser.add_argument("--output", type=Path, default=HERE.parent / "build" / "pipelines", help="compiled YAML dir")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(HERE))
    from kfp import Client, compiler

    try:
        arguments = parse_args(args.arg)
        module = importlib.import_module(args.pipeline)
    except (ValueError, ModuleNotFoundError) as exc:
        print(f"submit: error: {exc}", file=sys.stderr)
        return 2
    args.output.mkdir(parents=True, exist_ok=True)
    package = args.output / f"{args.pipeline}.yaml"
    compiler.Compiler().compile(getattr(module, args.pipeline), str(package))
    run_name = args.run or f"{args.pipeline}-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}"
    try:
        client = Client(host=args.host)
        result = client.create_run_from_pipeline_package(
            str(package), arguments=arguments, run_name=run_name, experiment_name=args.experiment
        )
    except Exception as exc:  # the KFP client raises urllib3/ApiException types for an unreachable or wrong host
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"submit: error: KFP API at {args.host}: {first}", file=sys.stderr)
        return 2
    print(f"submitted {run_name}: {args.host.rstrip('/')}/#/runs/details/{result.run_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
