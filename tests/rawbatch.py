"""Raw datapath samples laid out as the monitor reader hands them to the observer (a RecordBatch)."""

from __future__ import annotations

import numpy as np

from hubblepy.monitor.reader import RECORD_PAD, RecordBatch


def record_batch(samples: list[bytes]) -> RecordBatch:
    """``samples`` as one read of the reader: each 8-byte aligned, the data padded, all from CPU 0."""
    data = bytearray()
    offsets, lengths = [], []
    for raw in samples:
        offsets.append(len(data))
        lengths.append(len(raw))
        data += raw + bytes(-len(raw) % 8)
    data += bytes(RECORD_PAD)
    return RecordBatch(
        bytes(data),
        np.asarray(offsets, dtype=np.int64),
        np.asarray(lengths, dtype=np.uint32),
        np.zeros(len(samples), dtype=np.uint16),
        [],
    )
