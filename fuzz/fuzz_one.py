"""Run one fuzz target under atheris: ``python fuzz/fuzz_one.py TARGET [libFuzzer flags] [CORPUS_DIR...]``.

The project's modules are imported with atheris' coverage instrumentation, so the fuzzer is
guided by the branches it reaches. Normally started by ``fuzz/run.py`` (``nox -s fuzz``). The HTTP
proxy's modules run from their Python source here, not their mypyc build (atheris only sees Python
code); the test suite replays the corpus through the compiled build.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import atheris

os.environ["HUBBLEPY_NATIVE"] = "0"  # see above: read when hubblepy.proxy is imported
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

with atheris.instrument_imports(include=["hubblepy", "relay"]):
    import targets as fuzz_targets  # noqa: E402

    name = sys.argv[1] if len(sys.argv) > 1 else ""
    if name not in fuzz_targets.TARGETS:
        sys.exit(f"fuzz_one.py: unknown target {name!r} (one of {', '.join(fuzz_targets.TARGETS)})")
    target = fuzz_targets.TARGETS[name]()


def main() -> None:
    atheris.Setup([sys.argv[0], *sys.argv[2:]], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
