"""Coverage-guided fuzzing of the project's input parsers with atheris (``nox -s fuzz``).

    python fuzz/run.py [--seconds N | --smoke | --runs N] [--rss-limit-mb M] [TARGET ...]

Each target (``datapath``, ``flowline``, ``policy``, ``dnsquery``, ``httprequest``; all by default; see ``fuzz/targets.py``) runs
in its own process for a fixed time budget (default 300 s; ``--smoke`` = 30 s, the CI budget),
or for a number of executions (``--runs 1000000``, no time limit), starting from the seed corpus kept in ``fuzz/corpus/TARGET`` (the inputs the fuzzer finds on the
way go to a temporary directory, so the repository's corpus stays small). Printed per target:
executions, executions per second, coverage, and crashes, with the file holding the crashing input
(under ``fuzz/crashes/``, not tracked) and the first line of its error. A crash is an unexpected
exception, an internal parser error, a run over ``--timeout`` seconds on one input, or memory
above ``--rss-limit-mb``. The exit status is 1 when any target crashed.

To reproduce a crash: ``python fuzz/fuzz_one.py TARGET fuzz/crashes/TARGET/crash-...``.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TARGET_NAMES = ("datapath", "flowline", "policy", "dnsquery", "httprequest")
SMOKE_SECONDS = 30


def run_target(name: str, seconds: int, rss_limit_mb: int, timeout_s: int, runs: int = 0) -> dict:
    crashes_dir = HERE / "crashes" / name
    crashes_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"fuzz-{name}-") as work:
        argv = [
            sys.executable,
            str(HERE / "fuzz_one.py"),
            name,
            f"-runs={runs}" if runs else f"-max_total_time={seconds}",
            f"-rss_limit_mb={rss_limit_mb}",
            f"-timeout={timeout_s}",
            "-print_final_stats=1",
            f"-artifact_prefix={crashes_dir}/",
            work,  # new inputs go here (the first corpus directory)
            str(HERE / "corpus" / name),
        ]
        started = time.monotonic()
        proc = subprocess.run(argv, capture_output=True, text=True, errors="replace")
        elapsed = time.monotonic() - started
    log = proc.stdout + proc.stderr
    stats = dict(re.findall(r"^stat::(\w+):\s*(\d+)", log, re.M))
    runs = int(stats.get("number_of_executed_units", 0))
    if not runs:
        last = re.findall(r"^#(\d+)\s", log, re.M)
        runs = int(last[-1]) if last else 0
    cov = re.findall(r"\bcov: (\d+)", log)
    artifacts = re.findall(r"Test unit written to (\S+)", log)
    error = ""
    if proc.returncode != 0:
        found = re.search(
            r"^(?:=== Uncaught Python exception: ===\n)?(\w*(?:Error|Exception)\b.*)$", log, re.M
        )
        found = found or re.search(r"^==\d+== ERROR: (.*)$", log, re.M)
        error = found.group(1) if found else f"exit status {proc.returncode}"
    return {
        "name": name,
        "runs": runs,
        "execs_per_s": runs / elapsed if elapsed > 0 else 0.0,
        "cov": int(cov[-1]) if cov else 0,
        "crashes": len(artifacts) or (1 if proc.returncode != 0 else 0),
        "artifacts": artifacts,
        "error": error,
        "log": log,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="fuzz/run.py", description=__doc__.split("\n\n")[0])
    p.add_argument("targets", nargs="*", help=f"targets to run (default: {' '.join(TARGET_NAMES)})")
    p.add_argument("--seconds", type=int, default=300, help="time budget per target (default 300)")
    p.add_argument("--smoke", action="store_true", help=f"CI budget: {SMOKE_SECONDS} s per target")
    p.add_argument("--runs", type=int, default=0, help="run each target for this many executions instead")
    p.add_argument(
        "--rss-limit-mb", type=int, default=2048, help="memory above this is a crash (default 2048)"
    )
    p.add_argument("--timeout", type=int, default=10, help="seconds on one input that count as a crash")
    p.add_argument("-v", "--verbose", action="store_true", help="print the fuzzer's own output too")
    args = p.parse_args(argv)
    names = args.targets or list(TARGET_NAMES)
    unknown = [n for n in names if n not in TARGET_NAMES]
    if unknown:
        p.error(f"unknown target {unknown[0]!r} (one of {', '.join(TARGET_NAMES)})")
    if args.seconds < 1:
        p.error("--seconds must be at least 1")
    if args.runs < 0:
        p.error("--runs must be 0 or more")
    seconds = SMOKE_SECONDS if args.smoke else args.seconds
    failed = False
    print(f"{'target':<10} {'budget':>7} {'executions':>11} {'execs/s':>9} {'coverage':>9} {'crashes':>8}")
    for name in names:
        result = run_target(name, seconds, args.rss_limit_mb, args.timeout, args.runs)
        if args.verbose:
            print(result["log"])
        budget = f"{args.runs}x" if args.runs else f"{seconds}s"
        print(
            f"{name:<10} {budget:>7} {result['runs']:>11} {result['execs_per_s']:>9.0f} "
            f"{result['cov']:>9} {result['crashes']:>8}",
            flush=True,
        )
        if result["crashes"]:
            failed = True
            for path in result["artifacts"]:
                print(f"  crash input: {path}")
            print(f"  error: {result['error']}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
