"""Perf-buffer monitor: reads datapath events as raw samples in batches and counts lost samples."""

from hubblepy.monitor.reader import Batch, MonitorReader

__all__ = ["Batch", "MonitorReader"]
