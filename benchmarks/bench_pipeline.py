"""The node's pipeline at stepped offered rates (root, real eBPF): perf buffer -> observer ring.

``nox -s bench -- pipeline`` runs this; the work is in pipeline_bench.py (also stage ``pipeline`` of
bench_datapath.py). Prints, per reader setting, received events/s, flows/s into the ring, lost
samples, the pipeline's share of one core, events per pipeline CPU-second and bytes per ring slot,
and the highest offered rate read with 0 loss; then a `--follow --verdict DROPPED` reader beside the
pipeline with the decode rate of an unfiltered reader, and Hubble's metrics off/on. Asserts nothing.

Usage: sudo .venv/bin/python benchmarks/bench_pipeline.py [--seconds N] [--rates 100000,250000,...]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from hubblepy.datapath import DatapathUnavailable, check_environment  # noqa: E402

DEFAULT_RATES = "100000,250000,500000,750000,1000000,1250000,1500000"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--rates", default=DEFAULT_RATES, help="offered events/s, comma-separated")
    args = ap.parse_args()
    try:
        rates = [float(r) for r in args.rates.split(",") if r.strip()]
    except ValueError:
        ap.error(f"--rates must be numbers separated by commas, not {args.rates!r}")
    try:
        check_environment()
    except DatapathUnavailable as exc:
        print(f"bench_pipeline: skipped: {exc}")
        return
    from pipeline_bench import bench_pipeline

    bench_pipeline(args.seconds, rates)


if __name__ == "__main__":
    main()
