"""Flow UUIDs: random version-4 UUID strings made cheaply in batches."""

from __future__ import annotations

import os

_UUID_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


def uuid4_strings(count: int) -> list[str]:
    """``count`` random version-4 UUID strings from one urandom call (much cheaper than uuid.uuid4)."""
    return uuid4_strings_from(os.urandom(16 * count))


def uuid4_strings_from(raw: bytes) -> list[str]:
    """Version-4 UUID strings from 16 bytes each of ``raw`` (version and variant bits are forced)."""
    count = len(raw) // 16
    h = raw.hex()
    variant = _UUID_VARIANT
    out = []
    for i in range(0, 32 * count, 32):
        out.append(
            f"{h[i : i + 8]}-{h[i + 8 : i + 12]}-4{h[i + 13 : i + 16]}-"
            f"{variant[h[i + 16]]}{h[i + 17 : i + 20]}-{h[i + 20 : i + 32]}"
        )
    return out


def format_uuid4(raw: bytes) -> str:
    """Version-4 UUID text from 16 random bytes (version and variant bits are forced)."""
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_UUID_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"
