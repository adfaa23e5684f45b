"""The node's perf buffer size (``--monitor-num-pages``): validated with a one-line error before
anything is made, and the perf rings the reader maps are that size (real perf events)."""

from __future__ import annotations

import mmap
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from hubblepy.lab.source import DatapathFlowSource
from hubblepy.monitor import MonitorReader
from hubblepy.monitor.options import (
    DEFAULT_NUM_PAGES,
    MAX_NUM_PAGES,
    check_num_pages,
    ring_bytes_per_cpu,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("value", "pages"), [(1, 1), ("64", 64), (" 4096 ", 4096), (MAX_NUM_PAGES, MAX_NUM_PAGES)]
)
def test_powers_of_two_in_range_are_page_counts(value: object, pages: int) -> None:
    assert check_num_pages(value) == pages


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("1000", "must be a power of two from 1 to 65536"),
        (0, "must be a power of two"),
        ("-64", "must be a power of two"),
        (MAX_NUM_PAGES * 2, "must be a power of two from 1 to 65536"),
        ("4k", "must be a whole number of pages, not '4k'"),
        ("", "must be a whole number of pages"),
        (True, "must be a power of two"),
    ],
)
def test_other_values_are_refused_in_one_line(value: object, reason: str) -> None:
    with pytest.raises(ValueError) as info:
        check_num_pages(value)
    message = str(info.value)
    assert message.startswith("--monitor-num-pages ") and reason in message
    assert "\n" not in message


def test_the_default_is_a_valid_count_and_the_memory_is_its_pages() -> None:
    assert check_num_pages(DEFAULT_NUM_PAGES) == DEFAULT_NUM_PAGES
    assert ring_bytes_per_cpu(DEFAULT_NUM_PAGES) == (DEFAULT_NUM_PAGES + 1) * mmap.PAGESIZE


def test_the_lab_node_refuses_a_bad_count_before_making_anything(tmp_path: Path) -> None:
    folder = tmp_path / "lab"
    env = {**os.environ, "HUBBLEPY_LAB_DIR": str(folder), "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "hubblepy.lab.node", "--no-datapath", "--monitor-num-pages", "3000"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "lab: --monitor-num-pages must be a power of two from 1 to 65536 "
        f"(pages of {mmap.PAGESIZE} bytes per CPU), not 3000"
    ]
    assert not folder.exists()  # no lab folder, no pid file, no namespace


@pytest.mark.root
def test_the_source_maps_perf_rings_of_the_given_size() -> None:
    from hubblepy.monitor.generator import MixProgram
    from hubblepy.observer.core import Observer
    from hubblepy.parser import Parser, StaticResolver

    try:
        program = MixProgram()
    except Exception as exc:  # no bcc, no BPF: the kernel or the environment cannot run this
        pytest.skip(f"cannot load the generator program: {exc}")

    class Opens:
        def __init__(self) -> None:
            self.reader: MonitorReader | None = None
            self.opened = threading.Event()

        def open_monitor(self, **options: object) -> MonitorReader:
            self.reader = MonitorReader(program.map_fd, **options)  # type: ignore[arg-type]
            self.opened.set()
            return self.reader

    with program:
        for pages in (8, 256):
            datapath = Opens()
            source = DatapathFlowSource(
                datapath, Parser(StaticResolver(), "node-1"), read_timeout=0.02, pages=pages
            )
            stop = threading.Event()
            thread = threading.Thread(target=source.run, args=(Observer("node-1"), stop), daemon=True)
            thread.start()
            try:
                assert datapath.opened.wait(10), "the source did not open its reader"
                reader = datapath.reader
                assert reader is not None and reader._rings
                assert {ring.size for ring in reader._rings} == {pages * mmap.PAGESIZE}
                assert {len(ring.mm) for ring in reader._rings} == {ring_bytes_per_cpu(pages)}
            finally:
                stop.set()
                thread.join(10)
            assert not thread.is_alive()
