"""Minimal perf_event_open / bpf(2) syscalls through ctypes, for the monitor reader.

Only what reading a BPF perf event array needs: open one PERF_COUNT_SW_BPF_OUTPUT event per CPU,
mmap its ring, and put its fd into the map at the CPU's index.
"""

from __future__ import annotations

import ctypes
import os
import platform
import struct

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long

_SYSCALLS = {"x86_64": (298, 321), "aarch64": (241, 280)}  # (perf_event_open, bpf)
NR_PERF_EVENT_OPEN, NR_BPF = _SYSCALLS.get(platform.machine(), (298, 321))

PERF_TYPE_SOFTWARE = 1
PERF_COUNT_SW_BPF_OUTPUT = 10
PERF_SAMPLE_TIME = 1 << 2
PERF_SAMPLE_RAW = 1 << 10
PERF_FLAG_FD_CLOEXEC = 1 << 3
PERF_EVENT_IOC_ENABLE = 0x2400
PERF_EVENT_IOC_DISABLE = 0x2401

PERF_RECORD_LOST = 2
PERF_RECORD_SAMPLE = 9

BPF_MAP_UPDATE_ELEM = 2
BPF_MAP_DELETE_ELEM = 3
BPF_OBJ_PIN = 6
BPF_OBJ_GET = 7

# struct perf_event_mmap_page: data_head @1024, data_tail @1032, data_offset @1040, data_size @1048
MMAP_DATA_HEAD = 1024
MMAP_DATA_TAIL = 1032
MMAP_DATA_OFFSET = 1040
MMAP_DATA_SIZE = 1048

_ATTR_SIZE = 128
# type u32, size u32, config u64, sample_period u64, sample_type u64, read_format u64,
# flags u64, wakeup_events u32, bp_type u32, then zeros up to _ATTR_SIZE
_ATTR = struct.Struct("<IIQQQQQII")


def _errcheck(ret: int, what: str) -> int:
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ret


def open_bpf_output_event(cpu: int, wakeup_events: int, with_time: bool = False) -> int:
    """Opens a BPF-output perf event on ``cpu`` that wakes readers every ``wakeup_events`` samples.

    ``with_time`` adds the kernel's perf clock (u64 ns) to every sample, before the raw data.
    """
    buf = bytearray(_ATTR_SIZE)
    _ATTR.pack_into(
        buf,
        0,
        PERF_TYPE_SOFTWARE,
        _ATTR_SIZE,
        PERF_COUNT_SW_BPF_OUTPUT,
        1,
        PERF_SAMPLE_RAW | (PERF_SAMPLE_TIME if with_time else 0),
        0,
        0,
        wakeup_events,
        0,
    )
    attr = (ctypes.c_char * _ATTR_SIZE).from_buffer(buf)
    fd = _libc.syscall(NR_PERF_EVENT_OPEN, attr, -1, cpu, -1, PERF_FLAG_FD_CLOEXEC)
    return _errcheck(fd, f"perf_event_open(cpu {cpu})")


def perf_ioctl(fd: int, request: int) -> None:
    _errcheck(_libc.ioctl(fd, request, 0), "perf ioctl")


class _MapElemAttr(ctypes.Structure):
    _fields_ = [
        ("map_fd", ctypes.c_uint32),
        ("pad", ctypes.c_uint32),
        ("key", ctypes.c_uint64),
        ("value", ctypes.c_uint64),
        ("flags", ctypes.c_uint64),
    ]


def map_set_u32(map_fd: int, key: int, value: int) -> None:
    k = ctypes.c_uint32(key)
    v = ctypes.c_uint32(value)
    attr = _MapElemAttr(map_fd, 0, ctypes.addressof(k), ctypes.addressof(v), 0)
    ret = _libc.syscall(NR_BPF, BPF_MAP_UPDATE_ELEM, ctypes.byref(attr), ctypes.sizeof(attr))
    _errcheck(ret, f"bpf map update (key {key})")


def map_delete_u32(map_fd: int, key: int) -> None:
    k = ctypes.c_uint32(key)
    attr = _MapElemAttr(map_fd, 0, ctypes.addressof(k), 0, 0)
    _libc.syscall(NR_BPF, BPF_MAP_DELETE_ELEM, ctypes.byref(attr), ctypes.sizeof(attr))


def online_cpus() -> list[int]:
    """CPU numbers from /sys/devices/system/cpu/online (e.g. "0-3,6")."""
    with open("/sys/devices/system/cpu/online") as f:
        spec = f.read().strip()
    cpus: list[int] = []
    for part in spec.split(","):
        if "-" in part:
            lo, hi = part.split("-")
            cpus.extend(range(int(lo), int(hi) + 1))
        elif part:
            cpus.append(int(part))
    return cpus


class _ObjAttr(ctypes.Structure):
    _fields_ = [("pathname", ctypes.c_uint64), ("bpf_fd", ctypes.c_uint32), ("file_flags", ctypes.c_uint32)]


def obj_get(path: str) -> int:
    """fd of a pinned BPF object (e.g. a Cilium node's /sys/fs/bpf/tc/globals/cilium_events)."""
    name = ctypes.create_string_buffer(os.fsencode(path))
    attr = _ObjAttr(ctypes.addressof(name), 0, 0)
    return _errcheck(
        _libc.syscall(NR_BPF, BPF_OBJ_GET, ctypes.byref(attr), ctypes.sizeof(attr)), f"open {path}"
    )


def obj_pin(fd: int, path: str) -> None:
    name = ctypes.create_string_buffer(os.fsencode(path))
    attr = _ObjAttr(ctypes.addressof(name), fd, 0)
    _errcheck(_libc.syscall(NR_BPF, BPF_OBJ_PIN, ctypes.byref(attr), ctypes.sizeof(attr)), f"pin {path}")
