"""Print the path of a sample capture shipped with the package (for shell use).

``python -m hubblepy.sample.path`` prints the payments sample's path; ``python -m hubblepy.sample.path
pci-cde`` the pci-cde one (flows recorded from ``hubble lab up --scenario pci-cde`` and its verify
workflow: egress to ``*.cardprocessor.com`` by name, DNS flows, drops to the world).
"""

import sys
from importlib import resources

SAMPLES = {"payments": "payments-sample.jsonl", "pci-cde": "pci-cde-sample.jsonl"}


def sample_capture_path(name: str = "payments") -> str:
    """Filesystem path of the named sample capture (``payments`` or ``pci-cde``)."""
    try:
        file_name = SAMPLES[name]
    except KeyError:
        raise ValueError(f"unknown sample {name!r}: one of {', '.join(SAMPLES)}") from None
    return str(resources.files("hubblepy.sample").joinpath(file_name))


if __name__ == "__main__":
    try:
        print(sample_capture_path(*sys.argv[1:2]))
    except ValueError as exc:
        sys.exit(str(exc))
