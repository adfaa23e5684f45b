"""MonitorReader on a real perf event array fed by the datapath: batches, lost samples, stop."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from testbed import Testbed, run_in_netns

from hubblepy.datapath import Datapath, DatapathUnavailable, check_environment
from hubblepy.datapath.layout import NOTIFY_TRACE, TRACE_V2
from hubblepy.monitor import MonitorReader
from hubblepy.monitor.perf import obj_pin

pytestmark = pytest.mark.root


def _udp(samples: list[tuple[int, bytes]]) -> list[bytes]:
    """Trace samples of UDP packets (p2 has no UDP listener, so ICMP errors come along)."""
    return [raw for _cpu, raw in samples if raw[TRACE_V2.size + 14 + 9] == 17]


@pytest.fixture
def node() -> Iterator[tuple[Testbed, Datapath]]:
    try:
        check_environment()
    except DatapathUnavailable as exc:
        pytest.skip(str(exc))
    with Testbed(2) as tb, Datapath() as dp:
        for i, pod in enumerate(tb.pods, 1):
            dp.upsert_endpoint(i, pod.host_ifindex, 1000 + i)
            dp.set_ipcache(f"{pod.ip}/32", 1000 + i)
            dp.attach(pod.host_ifname, netns=tb.node)
        dp.set_monitor_aggregation("none")
        yield tb, dp


@contextlib.contextmanager
def on_one_cpu() -> Iterator[None]:
    """Keep this process on one CPU: the kernel writes a CPU's lost-sample record only when that
    CPU outputs again, so the sends after a loss must run where the samples were lost."""
    saved = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(saved)})
    try:
        yield
    finally:
        os.sched_setaffinity(0, saved)


def test_batches_carry_whole_samples_with_packet_bytes(node: tuple[Testbed, Datapath]) -> None:
    tb, dp = node
    p1, p2 = tb.pods
    with MonitorReader(dp.events_map_fd, pages=8, wakeup_events=4) as reader:
        tb.udp_send(p1, p2, 7000, 20, payload=b"y" * 100)
        samples = []
        while True:
            batch = reader.read(0.5)
            assert batch.lost == []
            if not batch.samples:
                break
            samples.extend(batch.samples)
        assert len(samples) == reader.received
        # besides the traces of our packets there may be ICMP errors (p2 has no UDP listener) and IGMP
        udp = _udp(samples)
        assert len(udp) == 40  # one from-endpoint and one to-endpoint trace per packet
        for raw in udp:
            assert raw[0] == NOTIFY_TRACE
            len_orig, len_cap = TRACE_V2.unpack_from(raw)[4:6]
            assert len_orig == 14 + 20 + 8 + 100 and len_cap == 128  # capped at the default payload length
            assert len(raw) - TRACE_V2.size - len_cap in range(8)  # at most 7 perf padding bytes
        assert reader.lost == 0


@pytest.mark.parametrize("ordered", [True, False])
def test_record_batches_hold_the_same_samples(node: tuple[Testbed, Datapath], ordered: bool) -> None:
    """read_records: one buffer with offsets instead of a bytes object per sample."""
    tb, dp = node
    p1, p2 = tb.pods
    with MonitorReader(dp.events_map_fd, pages=8, wakeup_events=4, ordered=ordered) as reader:
        tb.udp_send(p1, p2, 7000, 20, payload=b"y" * 100)
        samples: list[tuple[int, bytes]] = []
        while True:
            batch = reader.read_records(0.5)
            assert batch.lost == []
            if not len(batch.offsets):
                break
            for cpu, off, size in zip(
                batch.cpus.tolist(), batch.offsets.tolist(), batch.lengths.tolist(), strict=True
            ):
                samples.append((cpu, batch.data[off : off + size]))
        assert len(samples) == reader.received
        udp = _udp(samples)
        assert len(udp) == 40
        for raw in udp:
            len_orig, len_cap = TRACE_V2.unpack_from(raw)[4:6]
            assert raw[0] == NOTIFY_TRACE and len_orig == 14 + 20 + 8 + 100 and len_cap == 128
            assert raw[TRACE_V2.size + 42 : TRACE_V2.size + 128] == b"y" * 86  # packet bytes up to the cap


def test_record_batches_report_lost_samples(node: tuple[Testbed, Datapath]) -> None:
    tb, dp = node
    p1, p2 = tb.pods
    with on_one_cpu(), MonitorReader(dp.events_map_fd, pages=1) as reader:
        tb.udp_send(p1, p2, 7000, 500)
        reported: list[tuple[int, int]] = []
        for _ in range(20):
            batch = reader.read_records(0.1)
            reported.extend(batch.lost)
            if reported:
                break
            tb.udp_send(p1, p2, 7000, 5)
        assert reported, "the kernel never reported lost samples"
        assert reader.lost == sum(n for _, n in reported) > 0


def test_lost_samples_are_counted_when_the_reader_falls_behind(node: tuple[Testbed, Datapath]) -> None:
    tb, dp = node
    p1, p2 = tb.pods
    with on_one_cpu(), MonitorReader(dp.events_map_fd, pages=1) as reader:  # one page: ~20 events per CPU
        tb.udp_send(p1, p2, 7000, 500)  # the reader is not reading meanwhile
        reported: list[tuple[int, int]] = []
        for _ in range(20):
            # lost-sample records are written once there is room again, before the next sample
            batch = reader.read(0.1)
            reported.extend(batch.lost)
            if reported:
                break
            tb.udp_send(p1, p2, 7000, 5)
        assert reported, "the kernel never reported lost samples"
        assert reader.lost == sum(n for _, n in reported) > 0
        assert reader.received + reader.lost <= 2 * (500 + 5 * 20)


def test_stop_from_another_thread_ends_iteration(node: tuple[Testbed, Datapath]) -> None:
    tb, dp = node
    p1, p2 = tb.pods
    with MonitorReader(dp.events_map_fd, timeout=5.0) as reader:
        got: list[int] = []

        def consume() -> None:
            for batch in reader:
                got.append(len(batch.samples))

        t = threading.Thread(target=consume)
        t.start()
        tb.udp_send(p1, p2, 7000, 3)
        reader.stop()
        t.join(10)
        assert not t.is_alive()
        assert reader.stopped


def test_close_removes_reader_fds_from_the_map(node: tuple[Testbed, Datapath]) -> None:
    tb, dp = node
    p1, p2 = tb.pods
    reader = MonitorReader(dp.events_map_fd)
    reader.close()
    reader.close()
    tb.udp_send(p1, p2, 7000, 5)  # the programs' outputs now fail quietly (no reader on the CPU)
    with MonitorReader(dp.events_map_fd) as fresh:
        tb.udp_send(p1, p2, 7000, 1)
        samples = fresh.read(1.0).samples + fresh.read(0.2).samples
        assert len(_udp(samples)) == 2


def test_pages_must_be_a_power_of_two() -> None:
    with pytest.raises(ValueError, match="pages must be a power of two, not 3"):
        MonitorReader(-1, pages=3)


def test_reader_opens_a_pinned_map_like_cilium_events(node: tuple[Testbed, Datapath], tmp_path: Path) -> None:
    tb, dp = node
    p1, p2 = tb.pods
    fs = tmp_path / "bpffs"
    fs.mkdir()
    subprocess.run(["mount", "-t", "bpf", "bpf", str(fs)], check=True)  # a private bpffs instance
    try:
        pin = fs / "cilium_events"
        obj_pin(dp.events_map_fd, str(pin))
        with MonitorReader.from_pinned(str(pin)) as reader:
            tb.udp_send(p1, p2, 7000, 1)
            samples = reader.read(1.0).samples + reader.read(0.2).samples
            assert len(_udp(samples)) == 2
        pin.unlink()
    finally:
        subprocess.run(["umount", str(fs)], check=True)


def _send_from_cpu(pod_netns: str, cpu: int, dst_ip: str, payload: bytes) -> None:
    """One UDP datagram sent by a thread pinned to ``cpu`` (so its events land in that CPU's ring)."""

    def send() -> None:
        os.sched_setaffinity(0, {cpu})
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(payload, (dst_ip, 7000))

    run_in_netns(pod_netns, send)


def _record_samples(reader: MonitorReader, timeout: float) -> list[tuple[int, bytes]]:
    """One read_records batch as (cpu, sample bytes) pairs, in batch order."""
    batch = reader.read_records(timeout)
    return [
        (cpu, batch.data[off : off + size])
        for cpu, off, size in zip(
            batch.cpus.tolist(), batch.offsets.tolist(), batch.lengths.tolist(), strict=True
        )
    ]


@pytest.mark.parametrize("records", [False, True], ids=["read", "read_records"])
@pytest.mark.parametrize("ordered", [True, False])
def test_ordered_batches_follow_event_time_across_cpus(
    node: tuple[Testbed, Datapath], ordered: bool, records: bool
) -> None:
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("needs two CPUs")
    tb, dp = node
    p1, p2 = tb.pods
    with MonitorReader(dp.events_map_fd, ordered=ordered, wakeup_events=64) as reader:
        for i, cpu in enumerate([cpus[1], cpus[0], cpus[1], cpus[0]]):
            _send_from_cpu(p1.netns, cpu, p2.ip, b"%d" % i)
        read = (
            (lambda timeout: _record_samples(reader, timeout))
            if records
            else (lambda t: reader.read(t).samples)
        )
        samples = read(0.5)
        while more := read(0.2):
            samples += more
    # from-endpoint traces of our datagrams, in batch order: their payload is the send order
    sent = [raw[TRACE_V2.size + 42 : TRACE_V2.size + 43] for raw in _udp(samples) if raw[1] == 5]
    if ordered:
        assert sent == [b"0", b"1", b"2", b"3"]
    else:  # grouped by CPU: ring of cpus[0] first
        assert sent == [b"1", b"3", b"0", b"2"]
