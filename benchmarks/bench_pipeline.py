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
       [--pages 1024,4096] [--tables pipeline,follower,metrics]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from hubblepy.datapath import DatapathUnavailable, check_environment  # noqa: E402
from hubblepy.monitor.options import DEFAULT_NUM_PAGES, check_num_pages  # noqa: E402

DEFAULT_PAGES_ROWS = tuple(sorted({1024, DEFAULT_NUM_PAGES}))  # 1024: the agent's default before
TABLES = ("pipeline", "follower", "metrics")  # as pipeline_bench's (imported after the environment check)

DEFAULT_RATES = "100000,250000,500000,750000,1000000,1250000,1500000,2000000"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--rates", default=DEFAULT_RATES, help="offered events/s, comma-separated")
    ap.add_argument(
        "--nice", type=int, default=-10, help="niceness of the pipeline and the generator (0: leave as is)"
    )
    ap.add_argument(
        "--pages",
        default=",".join(str(p) for p in DEFAULT_PAGES_ROWS),
        help="perf ring pages per CPU of the pipeline rows, comma-separated (each a power of two)",
    )
    ap.add_argument(
        "--tables", default=",".join(TABLES), help=f"which tables, comma-separated: {', '.join(TABLES)}"
    )
    args = ap.parse_args()
    try:
        pages = [check_num_pages(p.strip(), "--pages") for p in args.pages.split(",") if p.strip()]
    except ValueError as exc:
        ap.error(str(exc))
    tables = tuple(t.strip() for t in args.tables.split(",") if t.strip())
    if not tables or set(tables) - set(TABLES):
        ap.error(f"--tables must name some of {', '.join(TABLES)}, not {args.tables!r}")
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

    bench_pipeline(args.seconds, rates, nice=args.nice, pages=pages, tables=tables)


if __name__ == "__main__":
    main()
