"""`hubble` start-up time, and `hubble observe --input-file` throughput on 200k realistic flows beside jq.

Start-up: the best wall time of `hubble version` and of `hubble observe --input-file` on the shipped
78-line sample (the console script, as a user runs it), beside the bare interpreter's start-up; the
goal is at most 0.1 s each on a quiet machine.

Throughput: prints flows/s for each case, the ratio to jq running the same selection, and the ratio to
issue 14's yardstick, `jq -c 'select(.flow.verdict == "DROPPED")'` on the same file (goal: at least 4x
for compact output of every flow). The input is generated once (deterministic seed)
into benchmarks/data/flows-200k.jsonl, about 1.5 KB a line with varied verdicts, L7 and namespaces.
Each command runs as a real process writing to /dev/null; the best of a few runs is reported, both
with the multi-process reader (the default for big files) and with one process (HUBBLEPY_WORKERS=1).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
NAMESPACE = "shop"

CASES = [
    ("compact, all flows", ["-o", "compact"], "."),
    (
        "--verdict DROPPED -o compact",
        ["--verdict", "DROPPED", "-o", "compact"],
        'select(.flow.verdict == "DROPPED")',
    ),
    ("-o json, all flows", ["-o", "json"], "."),
    ("-o jsonpb, all flows", ["-o", "jsonpb"], "."),
    (
        f"--namespace {NAMESPACE} --http-method POST -o json",
        ["--namespace", NAMESPACE, "--http-method", "POST", "-o", "json"],
        f'select((.flow.source.namespace == "{NAMESPACE}" or .flow.destination.namespace == "{NAMESPACE}")'
        ' and ((.flow.l7.http.method // "") | ascii_downcase) == "post")',
    ),
]


def ensure_input(count: int) -> Path:
    """Generate the benchmark input once and reuse it."""
    DATA.mkdir(exist_ok=True)
    path = DATA / f"flows-{count // 1000}k.jsonl"
    if not path.exists():
        from hubblepy.sample.flowgen import mixed_flows, write_jsonl

        started = time.perf_counter()
        tmp = path.with_suffix(".tmp")
        with tmp.open("wb") as out:
            write_jsonl(mixed_flows(count, seed=42), out)
        tmp.rename(path)
        print(f"generated {path} in {time.perf_counter() - started:.1f}s", file=sys.stderr)
    return path


def hubble_command() -> list[str]:
    """The `hubble` console script next to this interpreter, else ``python -m hubblepy.cli``."""
    script = Path(sys.executable).parent / "hubble"
    if script.exists():
        return [sys.executable, str(script)]
    return [sys.executable, "-m", "hubblepy.cli"]


def best_startup(command: list[str], runs: int, env: dict[str, str] | None) -> tuple[float, float]:
    """Best wall time and best CPU time (user + system, its children too) of ``runs`` runs of ``command``.

    The CPU time is what the wall time would be on an idle machine, less the I/O waits.
    """
    best_wall = best_cpu = float("inf")
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        subprocess.run(command, stdout=subprocess.DEVNULL, check=True, env=env)
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        best_wall, best_cpu = min(best_wall, wall), min(best_cpu, cpu)
    return best_wall, best_cpu


def startup(runs: int) -> None:
    """Print the best wall and CPU time of the short commands (the 0.1 s goal) and of a bare interpreter."""
    from hubblepy.sample.path import sample_capture_path as sample_path

    hubble = hubble_command()
    cases = [
        ("python -c pass (interpreter floor)", [sys.executable, "-c", "pass"]),
        ("hubble version", [*hubble, "version"]),
        ("hubble observe --input-file <78-line sample>", [*hubble, "observe", "--input-file", sample_path()]),
        (
            "  ... -o json --verdict DROPPED",
            [*hubble, "observe", "--input-file", sample_path(), "-o", "json", "--verdict", "DROPPED"],
        ),
    ]
    # As installed: byte-code caches written (the first run writes them; pip compiles on install).
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    load = os.getloadavg()[0]
    print(
        f"start-up (best of {runs}, load average {load:.2f}; goal: at most 0.100 s wall on a quiet machine)"
    )
    print(f"  {'command':<52} {'wall':>7} {'CPU':>7}")
    for name, command in cases:
        wall, cpu = best_startup(command, runs, env)
        print(f"  {name:<52} {wall:>6.3f}s {cpu:>6.3f}s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--flows", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--startup-runs", type=int, default=15)
    parser.add_argument("--startup-only", action="store_true", help="only the start-up times")
    parser.add_argument("--only", default="", help="only the throughput cases whose name holds this text")
    options = parser.parse_args()
    startup(options.startup_runs)
    if options.startup_only:
        return
    path = ensure_input(options.flows)
    lines = sum(1 for _ in path.open("rb"))
    size_mb = path.stat().st_size / 1e6
    print(f"input: {path.name}, {lines} flows, {size_mb:.0f} MB ({size_mb * 1e6 / lines:.0f} bytes/flow)")
    jq = shutil.which("jq")
    if jq is None:
        print("jq is not installed (scripts/bootstrap.sh installs it): no throughput comparison")
        return
    hubble = [sys.executable, "-m", "hubblepy.cli", "observe", "--input-file", str(path)]
    # As installed, like the start-up cases: with PYTHONDONTWRITEBYTECODE set and no caches yet
    # (a fresh checkout), every run would compile the modules it imports first.
    installed = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    one_process = installed | {"HUBBLEPY_WORKERS": "1"}
    # Issue 14's yardstick: jq selecting the drops, measured once and used for every case's last columns.
    # CPU columns (user + system, all processes) say the same without the other load on the machine.
    select_program = 'select(.flow.verdict == "DROPPED")'
    select_wall, select_cpu = best_startup([jq, "-c", select_program, str(path)], options.runs, env=None)
    print(
        f"jq -c '{select_program}': {lines / select_wall:,.0f} flows/s, {lines / select_cpu:,.0f} per CPU-second"
    )
    print(
        f"{'case':<46} {'hubblepy flows/s':>17} {'1 process':>10} {'jq flows/s':>11}"
        f" {'vs jq':>6} {'1-proc':>7} {'vs jq-select':>13} {'1-proc':>7} {'1-proc CPU':>11}"
    )
    for name, args, jq_program in CASES:
        if options.only not in name:
            continue
        wall, _ = best_startup([*hubble, *args], options.runs, env=installed)
        single_wall, single_cpu = best_startup([*hubble, *args], options.runs, one_process)
        jq_wall, _ = best_startup([jq, "-c", jq_program, str(path)], options.runs, env=None)
        ours, single, theirs = lines / wall, lines / single_wall, lines / jq_wall
        ratios = (
            f"{ours / theirs:>5.1f}x {single / theirs:>6.1f}x {select_wall / wall:>12.1f}x"
            f" {select_wall / single_wall:>6.1f}x {select_cpu / single_cpu:>10.1f}x"
        )
        print(f"{name:<46} {ours:>17,.0f} {single:>10,.0f} {theirs:>11,.0f} {ratios}")
    print(f"load average {os.getloadavg()[0]:.2f} (goal: compact, all flows, at least 4x jq-select)")


if __name__ == "__main__":
    main()
