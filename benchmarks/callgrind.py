"""Instructions a command executes, counted by valgrind's callgrind (the cost benchmarks' figure
that does not move with the machine's load).

Runs are made without address-space randomisation (``setarch -R``) and with a fixed hash seed: with
randomisation the count of the same Python run moved by up to 15% (object addresses decide dict
and set layouts); without, by about 2%.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path


def available() -> bool:
    return shutil.which("valgrind") is not None


def instructions(cmd: list[str]) -> int:
    """The total instructions ``cmd`` executed (its start-up included: callers take the
    difference of two run lengths)."""
    setarch = ["setarch", "-R"] if shutil.which("setarch") else []
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "callgrind.out"
        subprocess.run(
            [*setarch, "valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *cmd],
            check=True,
            capture_output=True,
            env={**os.environ, "PYTHONHASHSEED": "0"},
        )
        for line in out.read_text().splitlines():
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    raise RuntimeError(f"callgrind wrote no total for {cmd}")


def marginal(cmd_for: Callable[[int], list[str]], small: int, large: int, units: int = 1) -> int | None:
    """Instructions per unit of work: ``cmd_for(n)`` does ``n * units`` units, and the difference of
    its runs at ``large`` and ``small`` leaves out what does not grow with ``n`` (start-up, reading
    input). None without valgrind."""
    if not available():
        return None
    counts = [instructions(cmd_for(n)) for n in (small, large)]
    return (counts[1] - counts[0]) // ((large - small) * units)
