"""Hubble's flow exporter: every flow the node stores, as GetFlowsResponse JSON lines in a file.

Settings are upstream's (``--export-file-path``, ``--export-file-max-size-mb``,
``--export-file-max-backups``, ``--export-file-compress``, ``--export-allowlist``,
``--export-denylist``, ``--export-fieldmask``); see docs/export.md. The lines are the bytes of
``hubble observe -o json``, so ``hubble observe --input-file`` (ours and upstream's) reads them.

The exporter is an observer flow listener that only queues the batch; a writer thread filters,
masks, encodes and writes. Rotation happens between lines, so a line is never split across files,
and a failed write (a full disk) is cut back to the last whole line, reported once on stderr,
counted, and retried with the next batch: the node keeps serving.
"""

from hubblepy.export.exporter import ExportError, ExportSettings, FlowExporter, exporter_from_args
from hubblepy.export.rotate import RotatingFile

__all__ = ["ExportError", "ExportSettings", "FlowExporter", "RotatingFile", "exporter_from_args"]
