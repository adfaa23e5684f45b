"""Evidence benchmark: `hubble evidence export` and `verify` on a big capture, beside `hubble observe`.

Builds a capture of N copies of the shipped payments sample (78 lines each, ~1.6 KB per line) in a
temporary folder, then times, as real processes: `hubble observe --input-file F -o json` (what the
export's flows.jsonl is made by), `hubble evidence export --input-file F` (observe plus the chain, the
manifest and the report), and `hubble evidence verify`. Prints lines/s and the export/observe ratio;
asserts nothing. Usage: .venv/bin/python benchmarks/bench_evidence.py [--copies N]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def timed(argv: list[str], stdout=subprocess.DEVNULL) -> float:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "hubblepy.cli", *argv], check=True, stdout=stdout, env=env)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=1300, help="copies of the sample (default 1300)")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from hubblepy.sample.path import sample_capture_path

    sample = Path(sample_capture_path()).read_bytes()
    with tempfile.TemporaryDirectory(prefix="hubblepy-bench-evidence-") as tmp:
        capture = Path(tmp) / "capture.jsonl"
        capture.write_bytes(sample * args.copies)
        lines = sample.count(b"\n") * args.copies
        print(f"capture: {lines} lines, {capture.stat().st_size / 1e6:.0f} MB; load {os.getloadavg()[0]:.2f}")
        observe = timed(["observe", "--input-file", str(capture), "-o", "json"])
        export = timed(["evidence", "export", "--input-file", str(capture), "--output", f"{tmp}/bundle"])
        verify = timed(["evidence", "verify", f"{tmp}/bundle"])
        for name, seconds in (
            ("observe -o json", observe),
            ("evidence export", export),
            ("evidence verify", verify),
        ):
            print(f"{name:16} {seconds:6.2f} s  {lines / seconds:10.0f} lines/s")
        print(f"export / observe: {export / observe:.2f}")


if __name__ == "__main__":
    main()
