"""``nox -s bench -- dns`` (root): DNS-aware egress figures.

Rows from :mod:`fqdn_allow`: the time from a DNS answer to its toFQDNs policy-map entry (p50/p99).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fqdn_allow  # noqa: E402


def main() -> None:
    fqdn_allow.main()


if __name__ == "__main__":
    main()
