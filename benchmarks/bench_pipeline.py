"""The node's pipeline at stepped offered rates (root, real eBPF): perf buffer -> observer ring.

``nox -s bench -- pipeline`` runs this; the work is in pipeline_bench.py (also stage ``pipeline`` of
bench_datapath.py). The generator emits Cilium's trace/drop/policy-verdict records in the kernel
(BPF_PROG_TEST_RUN, paced in 1 ms steps) on one CPU, the pipeline reads them on another. Prints, per
reader setting and offered rate: flows/s ingested into the ring, lost samples, the pipeline's share
of one core, events per pipeline CPU-second, bytes per ring slot, the generator's share of its core,
and the highest offered rate read with 0 loss; then a `--follow --verdict DROPPED` reader beside the
pipeline (its drops/s, whether it was lapped) with the decode rate of an unfiltered reader, and
Hubble's metrics off/on. Asserts nothing.

Usage: sudo .venv/bin/python benchmarks/bench_pipeline.py [--seconds N] [--rates 100000,250000,...] [--nice N]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from hubblepy.datapath import DatapathUnavailable, check_environment  # noqa: E402

DEFAULT_RATES = "100000,250000,500000,750000,1000000,1250000,1500000,2000000"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--rates", default=DEFAULT_RATES, help="offered events/s, comma-separated")
    ap.add_argument(
        "--nice", type=int, default=-10, help="niceness of the pipeline and the generator (0: leave as is)"
    )
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

    bench_pipeline(args.seconds, rates, nice=args.nice)


if __name__ == "__main__":
    main()
