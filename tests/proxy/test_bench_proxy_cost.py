"""benchmarks/bench_proxy_cost.py still drives the real proxy objects: every request reaches the
server stand-in and makes two L7 records (the benchmark exits non-zero when a request is refused)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from hubblepy import native

REPO = Path(__file__).resolve().parents[2]


def test_the_cost_benchmark_runs_the_proxy_path_it_claims() -> None:
    run = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "bench_proxy_cost.py"),
            "--requests",
            "640",
            "--repeat",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    with_log = re.search(
        r"with L7 records +([\d.]+) µs CPU/request .*\(([\d.]+) records/request\)", run.stdout
    )
    without = re.search(r"without records +([\d.]+) µs CPU/request", run.stdout)
    assert with_log and without, run.stdout
    assert float(with_log.group(2)) == 2.0  # a request record and a response record per exchange
    assert float(with_log.group(1)) > 0 and float(without.group(1)) > 0
    # it says which build it measured; with the mypyc build it also measures the Python source
    compiled = native.stale_reason() is None and os.environ.get("HUBBLEPY_NATIVE") != "0"
    assert ("the proxy's modules compiled by mypyc" in run.stdout) is compiled, run.stdout
    assert ("from the Python source (HUBBLEPY_NATIVE=0)" in run.stdout) is compiled, run.stdout
