"""benchmarks/bench_node_l7.py still takes in what it claims: the real proxy's access log, every
record into the ring, counted by the lab's metrics, and read back naming both pods (the benchmark
exits non-zero when the node found a malformed line or the flows read back are not those)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_node_intake_benchmark_runs_the_path_it_claims() -> None:
    run = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "bench_node_l7.py"),
            "--requests",
            "1280",
            "--repeat",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr + run.stdout
    off = re.search(r"metrics off +([\d.]+) µs CPU/record", run.stdout)
    on = re.search(r"metrics on \(lab default\) +([\d.]+) µs CPU/record", run.stdout)
    read = re.search(
        r"first read \(decode\) +([\d.]+) µs CPU/flow +\(([\d,]+) flows in the ring\)", run.stdout
    )
    assert off and on and read, run.stdout
    assert int(read.group(2).replace(",", "")) == 2 * 1280  # a request and a response record each
