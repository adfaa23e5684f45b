"""Developer sessions: tests, lint, protos, bench (and demo).

Sessions run in the current environment (``venv_backend="none"``): the project's environment is a
virtualenv made by ``scripts/bootstrap.sh`` from Debian's Python with system site packages, because
bcc (Debian's python3-bpfcc) only exists there. Run them as ``.venv/bin/nox -s NAME``.
"""

from __future__ import annotations

import os

import nox

nox.options.default_venv_backend = "none"
nox.options.sessions = ["lint", "tests"]


@nox.session
def tests(session: nox.Session) -> None:
    """The whole test suite (real eBPF tests need root; they say why when they skip)."""
    session.run("python", "scripts/gen_protos.py", "--check")
    session.run("python", "-m", "pytest", "-q", "-ra", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff: lint and format check."""
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def protos(session: nox.Session) -> None:
    """Regenerate hubblepy/api from proto/."""
    session.run("python", "scripts/gen_protos.py")


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks: CLI flows/s beside jq, relay end to end, parser and datapath events/s, policy.

    ``nox -s bench`` runs them all; ``nox -s bench -- cli relay`` runs the named ones; ``-- l7`` (root,
    not in the default set) is the L7 proxy against HAProxy on the lab's frontend -> api path.
    """
    names = session.posargs or ["cli", "relay", "parser", "datapath", "policy"]
    for name in names:
        path = f"benchmarks/bench_{name}.py"
        if not os.path.exists(path):
            session.error(f"no benchmark {path}")
        session.run("python", path)
