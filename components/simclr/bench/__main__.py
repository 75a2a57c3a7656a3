"""`python -m simclr.bench`: the performance table, one JSON object per line.

Runs each benchmark module in turn (augmentation, pretraining, data preparation, image
ingest, input pipeline) and prints every row as soon as it is measured, so a long run
shows progress.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys

from simclr import errors

MODULES = ("augment", "train", "prepare", "ingest", "input")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m simclr.bench", description=__doc__)
    parser.add_argument(
        "--only", default=",".join(MODULES), help=f"comma-separated subset of {','.join(MODULES)}"
    )
    parser.add_argument(
        "--quick", action="store_true", help="shorter timings (for smoke tests), less precise"
    )
    parser.add_argument(
        "--encoders", default="resnet18,resnet50", help="encoders for the pretraining benchmark"
    )
    parser.add_argument(
        "--batch_size",
        type=int,
        default=None,
        help="pretraining benchmark batch (default: per module)",
    )
    parser.add_argument(
        "--cifar10_source",
        default=None,
        help="archive for the prepare_data timing (default: a full "
        "archive built from ../shared/data)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    selected = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(selected) - set(MODULES))
    if unknown:
        return errors.report(f"unknown benchmark module(s): {', '.join(unknown)}")
    for name in selected:
        module = importlib.import_module(f"simclr.bench.{name}")
        for row in module.benchmarks(args):
            print(json.dumps(row, sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
