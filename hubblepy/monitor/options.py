"""The node's perf buffer size: ``--monitor-num-pages`` (Cilium's ``MonitorNumPages`` setting).

Each CPU gets its own perf ring of this many pages (a power of two, as the kernel requires); the
kernel drops samples (and counts them as lost) when a CPU's ring is full because the reader was not
scheduled in time. The default is measured with ``nox -s bench -- pipeline`` (docs/datapath.md:
"The perf buffer size"): 4096 pages (16 MiB per CPU with 4 KiB pages) held every offered rate up
to ~1.7M events/s with 0 loss on a loaded 2-core machine, where 1024 pages lost samples from
0.75M events/s on whenever the reader was descheduled for more than ~20 ms.
"""

from __future__ import annotations

import mmap

NUM_PAGES_FLAG = "--monitor-num-pages"
DEFAULT_NUM_PAGES = 4096
MIN_NUM_PAGES = 1
MAX_NUM_PAGES = 65536  # 256 MiB per CPU with 4 KiB pages: anything larger is a typo


def check_num_pages(value: object, flag: str = NUM_PAGES_FLAG) -> int:
    """``value`` (an int or its decimal text) as a page count, or ValueError with a one-line reason."""
    text = str(value).strip()
    pages = -1
    if isinstance(value, int) and not isinstance(value, bool):
        pages = value
    elif not isinstance(value, bool):
        try:
            pages = int(text, 10)
        except ValueError:
            raise ValueError(f"{flag} must be a whole number of pages, not {text!r}") from None
    if not MIN_NUM_PAGES <= pages <= MAX_NUM_PAGES or pages & (pages - 1):
        raise ValueError(
            f"{flag} must be a power of two from {MIN_NUM_PAGES} to {MAX_NUM_PAGES} "
            f"(pages of {mmap.PAGESIZE} bytes per CPU), not {text}"
        )
    return pages


def ring_bytes_per_cpu(pages: int) -> int:
    """Bytes of locked kernel memory one CPU's ring takes (its data pages and the control page)."""
    return (pages + 1) * mmap.PAGESIZE
