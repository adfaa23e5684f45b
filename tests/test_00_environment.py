"""The machine has every external program the suite, the lab, the demo and the benchmarks call.

The programs and their Debian packages are listed once, in scripts/external-programs.txt; the
bootstrap installs those packages. A program missing from PATH fails here, first, with the package
that provides it, rather than later as an obscure error (or a skip) deep inside a lab test.
"""

from __future__ import annotations

import shutil

import pytest
from hubbletest import REPO_ROOT

TABLE = REPO_ROOT / "scripts" / "external-programs.txt"


def external_programs() -> list[tuple[str, str]]:
    """(program, Debian package) rows of the table; comments and blank lines are skipped."""
    rows = []
    for number, line in enumerate(TABLE.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        cells = line.split(None, 2)
        if len(cells) < 3:
            raise ValueError(f"{TABLE}:{number}: want 'program package used-by', got {line!r}")
        rows.append((cells[0], cells[1]))
    return rows


PROGRAMS = external_programs()


@pytest.mark.parametrize(("program", "package"), PROGRAMS, ids=[p for p, _ in PROGRAMS])
def test_program_is_on_path(program: str, package: str) -> None:
    assert shutil.which(program), (
        f"`{program}` is not on PATH: install the Debian package {package} "
        f"(apt-get install -y {package}, or run scripts/bootstrap.sh)"
    )
