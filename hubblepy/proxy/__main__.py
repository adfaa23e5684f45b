"""Starts the node's HTTP proxy: ``python -m hubblepy.proxy http [options]``.

The launcher is plain Python so that ``hubblepy.proxy.http`` may be loaded from its compiled build
(:mod:`hubblepy.native`): ``python -m`` can only run a module that has Python code.
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    if not argv or argv[0] != "http":
        print("usage: python -m hubblepy.proxy http [options]", file=sys.stderr)
        return 2
    from hubblepy.proxy import http

    return http.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
