"""Developer sessions: tests, lint, typecheck, protos, bench, fuzz.

Sessions run in the current environment (``venv_backend="none"``): the project's environment is a
virtualenv made by ``scripts/bootstrap.sh`` from Debian's Python with system site packages, because
bcc (Debian's python3-bpfcc) only exists there. Run them as ``.venv/bin/nox -s NAME``.
"""

from __future__ import annotations

import os
import sys

import nox

nox.options.default_venv_backend = "none"
nox.options.sessions = ["lint", "typecheck", "tests"]


@nox.session
def tests(session: nox.Session) -> None:
    """The whole test suite (real eBPF tests need root; they say why when they skip)."""
    session.run("python", "scripts/gen_protos.py", "--check")
    session.run("python", "scripts/gen_schema_data.py", "--check")
    session.run("python", "-m", "pytest", "-q", "-ra", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff: lint and format check."""
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy over the package (hubblepy and relay; settings in pyproject.toml)."""
    session.run("mypy")


@nox.session
def protos(session: nox.Session) -> None:
    """Regenerate hubblepy/api from proto/, then the codec's schema data (hubblepy/codec/schema_data.py)."""
    session.run("python", "scripts/gen_protos.py")
    session.run("python", "scripts/gen_schema_data.py")


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks (benchmarks/bench_NAME.py): CLI flows/s beside jq, relay end to end, parser and
    datapath events/s, policy; ``codec`` (per-line costs) runs only when named.

    ``nox -s bench`` runs them all; ``nox -s bench -- cli relay`` runs the named ones; ``-- l7`` (root,
    not in the default set) is the L7 proxy against HAProxy on the lab's frontend -> api path; ``-- proxy_cost``
    is the proxy's own Python per request, without the network; ``-- node_l7`` the node's intake of
    its access log per record (ring and metrics), without the network; ``-- connect``
    times the live commands' connection errors per cause.
    """
    names = session.posargs or ["cli", "relay", "parser", "datapath", "policy"]
    for name in names:
        path = f"benchmarks/bench_{name}.py"
        if not os.path.exists(path):
            session.error(f"no benchmark {path}")
        session.run("python", path)


@nox.session
def fuzz(session: nox.Session) -> None:
    """Coverage-guided fuzzing (atheris) of the datapath event parser, flow-line decoder, policy loader,
    the DNS proxy's message parsing and the HTTP proxy's client side.

    ``nox -s fuzz`` gives each target 300 s; ``nox -s fuzz -- --smoke`` is the CI budget (30 s each);
    ``nox -s fuzz -- --seconds 60 flowline`` picks the budget and targets. Prints executions/s and
    crashes per target and fails when a target crashed (see ``fuzz/run.py``).
    """
    session.run(sys.executable, "fuzz/run.py", *session.posargs)  # nox's own interpreter: the venv's
