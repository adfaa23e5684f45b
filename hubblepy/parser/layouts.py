"""Fixed header layouts of Cilium datapath events (Cilium's pkg/monitor structs), as precompiled structs.

Multi-byte header fields are in host byte order (``=``: native order, standard sizes, no padding).
Each struct covers the part of the header common to all versions of that message; versioned tails
(orig IP, trace id, cookie, ...) are read with the small structs below at their documented offsets.
"""

from __future__ import annotations

import struct

# type, subtype, source, hash, len_orig, len_cap, version, ext_version (16 bytes)
COMMON = struct.Struct("=BBHIIHBB")

# drop: common + src_label, dst_label, dst_id(u32), line, file, ext_error(s8), ifindex (36 bytes)
DROP = struct.Struct("=BBHIIHBBIIIHBbI")
DROP_V0_LEN = DROP.size  # v0 and v1: 36 bytes
DROP_V2_LEN = 40  # + flags u8 at 36, 3 pad bytes
DROP_V3_LEN = 48  # + ip_trace_id u64 at 40
DROP_FLAGS_OFFSET = 36
DROP_TRACE_ID_OFFSET = 40

# trace: common + src_label, dst_label, dst_id(u16), reason, flags, ifindex (32 bytes)
TRACE = struct.Struct("=BBHIIHBBIIHBBI")
TRACE_V0_LEN = TRACE.size  # 32 bytes
TRACE_V1_LEN = 48  # + orig_ip[16] at 32
TRACE_V2_LEN = 56  # + ip_trace_id u64 at 48
TRACE_ORIG_IP_OFFSET = 32
TRACE_TRACE_ID_OFFSET = 48

# policy verdict: common + remote_label, verdict(s32), dst_port, proto, flags, auth_type (29 bytes)
POLICY_VERDICT = struct.Struct("=BBHIIHBBIiHBBB")
POLICY_VERDICT_OLD_LEN = 32  # Cilium <= 1.17: packet at 32, no cookie
POLICY_VERDICT_LEN = 40  # current: cookie u32 at 32, 4 pad bytes, packet at 40
POLICY_VERDICT_COOKIE_OFFSET = 32

# debug capture: common + arg1, arg2 (24 bytes)
CAPTURE = struct.Struct("=BBHIIHBBII")
CAPTURE_LEN = CAPTURE.size  # 24 bytes

# debug message: type, subtype, source, hash, arg1, arg2, arg3 (20 bytes, no packet)
DEBUG_MSG = struct.Struct("=BBHIIII")

# trace-sock, current 40-byte layout: type, xlate_point, l4_proto, flags, dst_port, 2 pad,
# sock_cookie, cgroup_id, dst_ip[16]. The older 38-byte packed and 40-byte "dst_ip at 2" layouts
# cannot be told apart from this one (no version field); only this one is decoded.
TRACE_SOCK = struct.Struct("=BBBBH2xQQ16s")

U32 = struct.Struct("=I")
U64 = struct.Struct("=Q")
