"""Datapath events emitted in the kernel on demand: a tc program run with BPF_PROG_TEST_RUN.

The program writes the datapath's three event records in Cilium's layouts (bpf/hubble_events.h)
into its own perf event array, each with up to 128 packet bytes of a TCP SYN: per run, 8 trace
events (half from-endpoint, half to-endpoint), 4 policy drops and 4 allowed ingress policy
verdicts. One ``bpf(BPF_PROG_TEST_RUN)`` call with ``repeat=n`` runs it ``n`` times back to back
in the kernel, so the samples reach the perf buffer exactly as the datapath's do, at a rate bounded
by the kernel's cost per sample. The pipeline benchmark drives it; the tests use it as a source of
real perf samples. Needs root and bcc.
"""

from __future__ import annotations

import ctypes
import os
from typing import Any

from hubblepy.datapath.datapath import BPF_DIR
from hubblepy.monitor.perf import NR_BPF

BPF_PROG_TEST_RUN = 10

EVENTS_PER_RUN = 16  # 8 trace + 4 drop + 4 policy verdict
POLICY_COOKIE = 7

# frontend (10.200.0.1, endpoint 11, identity 1001) -> api (10.200.0.2, endpoint 12, identity 1002)
MIX_C = r"""
#include "hubble_events.h"
BPF_PERF_OUTPUT(pipeline_events);
/* One run emits 8 trace, 4 drop and 4 policy-verdict events with up to 128 packet bytes each. */
int generate_mix(struct __sk_buff *skb) {
    __u32 cap = skb->len < 128 ? skb->len : 128;
    struct hp_trace_notify tr = {};
    tr.hdr.type = HP_NOTIFY_TRACE;
    tr.hdr.version = HP_TRACE_VER;
    tr.hdr.len_cap = cap;
    tr.hdr.len_orig = skb->len;
    tr.src_label = 1001;
    tr.dst_label = 1002;
    tr.reason = HP_CT_NEW;
    #pragma unroll
    for (int i = 0; i < 8; i++) {
        tr.hdr.hash = i;
        if (i & 1) {
            tr.hdr.subtype = HP_TRACE_TO_LXC;
            tr.hdr.source = 12;
            tr.dst_id = 12;
            tr.ifindex = 102;
        } else {
            tr.hdr.subtype = HP_TRACE_FROM_LXC;
            tr.hdr.source = 11;
            tr.dst_id = 0;
            tr.ifindex = 101;
        }
        pipeline_events.perf_submit_skb(skb, cap, &tr, sizeof(tr));
    }
    struct hp_drop_notify dr = {};
    dr.hdr.type = HP_NOTIFY_DROP;
    dr.hdr.subtype = HP_DROP_POLICY;
    dr.hdr.source = 11;
    dr.hdr.version = HP_DROP_VER;
    dr.hdr.len_cap = cap;
    dr.hdr.len_orig = skb->len;
    dr.src_label = 1001;
    dr.dst_label = 1002;
    dr.line = 321;
    dr.file = HP_FILE_ID;
    dr.ifindex = 101;
    #pragma unroll
    for (int i = 0; i < 4; i++) {
        dr.hdr.hash = i;
        pipeline_events.perf_submit_skb(skb, cap, &dr, sizeof(dr));
    }
    struct hp_policy_verdict_notify pv = {};
    pv.hdr.type = HP_NOTIFY_POLICY_VERDICT;
    pv.hdr.source = 12;
    pv.hdr.version = HP_POLICY_VERDICT_VER;
    pv.hdr.len_cap = cap;
    pv.hdr.len_orig = skb->len;
    pv.remote_label = 1001;
    pv.verdict = 0;
    pv.dst_port = 8080;
    pv.proto = 6;
    pv.pv_flags = HP_DIR_INGRESS | (HP_MATCH_L3_L4 << 3);
    pv.cookie = POLICY_COOKIE;
    #pragma unroll
    for (int i = 0; i < 4; i++) {
        pv.hdr.hash = i;
        pipeline_events.perf_submit_skb(skb, cap, &pv, sizeof(pv));
    }
    return 0;
}
"""

# Ethernet + IPv4 + TCP SYN 10.200.0.1:40000 -> 10.200.0.2:8080 + 88 zero bytes: a 142-byte frame
TCP_SYN_FRAME = (
    bytes.fromhex("0200000000010200000000020800")
    + bytes.fromhex("4500008000004000400600000ac800010ac80002")
    + bytes.fromhex("9c401f9000000001000000005002ffff00000000")
    + bytes(88)
)


class ProgTestRunAttr(ctypes.Structure):
    """The BPF_PROG_TEST_RUN part of union bpf_attr (fields up to repeat are all we set)."""

    _fields_ = [
        ("prog_fd", ctypes.c_uint32),
        ("retval", ctypes.c_uint32),
        ("data_size_in", ctypes.c_uint32),
        ("data_size_out", ctypes.c_uint32),
        ("data_in", ctypes.c_uint64),
        ("data_out", ctypes.c_uint64),
        ("repeat", ctypes.c_uint32),
        ("duration", ctypes.c_uint32),
        ("ctx_size_in", ctypes.c_uint32),
        ("ctx_size_out", ctypes.c_uint32),
        ("ctx_in", ctypes.c_uint64),
        ("ctx_out", ctypes.c_uint64),
        ("flags", ctypes.c_uint32),
        ("cpu", ctypes.c_uint32),
        ("batch_size", ctypes.c_uint32),
    ]


_libc = ctypes.CDLL(None, use_errno=True)


def prog_test_run(attr: ProgTestRunAttr) -> int:
    """One BPF_PROG_TEST_RUN call with ``attr``; returns the kernel's mean duration per run (ns)."""
    if _libc.syscall(NR_BPF, BPF_PROG_TEST_RUN, ctypes.byref(attr), ctypes.sizeof(attr)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"BPF_PROG_TEST_RUN failed: {os.strerror(err)}")
    return int(attr.duration)


def run_program(prog_fd: int, repeat: int, attr: ProgTestRunAttr | None = None) -> None:
    """Run the program ``repeat`` times in the kernel on TCP_SYN_FRAME (one bpf() call).

    ``attr``: arguments from :func:`frame_attr` to reuse (a paced caller makes no new ones per call)."""
    if attr is None:
        attr = frame_attr(prog_fd)
    attr.repeat = repeat
    prog_test_run(attr)


def frame_attr(prog_fd: int, frame: bytes = TCP_SYN_FRAME, repeat: int = 0) -> ProgTestRunAttr:
    """The BPF_PROG_TEST_RUN arguments that run ``prog_fd`` on ``frame`` ``repeat`` times."""
    buffer = ctypes.create_string_buffer(frame, len(frame))
    attr = ProgTestRunAttr(
        prog_fd=prog_fd, data_size_in=len(frame), data_in=ctypes.addressof(buffer), repeat=repeat
    )
    attr._frame = buffer  # the kernel reads the frame through data_in: keep it alive with the attr
    return attr


class MixProgram:
    """The compiled and loaded program: ``prog_fd`` to run, ``map_fd`` (its perf event array) to read."""

    def __init__(self) -> None:
        from bcc import BPF

        self.bpf: Any = BPF(
            text=MIX_C.replace("POLICY_COOKIE", str(POLICY_COOKIE)).encode(),
            cflags=[f"-I{BPF_DIR}", "-Wno-macro-redefined"],
        )
        self.prog_fd: int = self.bpf.load_func(b"generate_mix", BPF.SCHED_CLS).fd
        self.map_fd: int = self.bpf.get_table(b"pipeline_events").map_fd

    def close(self) -> None:
        self.bpf.cleanup()

    def __enter__(self) -> MixProgram:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
