"""RotatingFile: rotation between whole lines, backups kept and pruned, gzip, failed writes cut back."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from hubblepy.export import RotatingFile


def lines_of(path: Path) -> list[bytes]:
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    assert data == b"" or data.endswith(b"\n"), f"{path} ends inside a line"
    return data.splitlines(keepends=True)


def test_rotation_never_splits_a_line(tmp_path: Path) -> None:
    path = tmp_path / "events.log"
    out = RotatingFile(str(path), max_bytes=1000, max_backups=0)
    written = [(b"%05d " % i) + b"x" * (i * 37 % 300) + b"\n" for i in range(400)]
    for start in range(0, len(written), 7):
        out.write_lines(written[start : start + 7])
    out.close()
    files = [*out.backups(), path]
    assert out.rotations == len(files) - 1 > 10
    got = []
    for f in files:
        size = f.stat().st_size
        content = lines_of(f)
        assert size <= 1000
        got.extend(content)
    assert got == written  # every line once, whole, in order across the files


def test_backups_are_pruned_and_compressed(tmp_path: Path) -> None:
    path = tmp_path / "flows.json"
    out = RotatingFile(str(path), max_bytes=100, max_backups=3, compress=True)
    for i in range(50):
        out.write_lines([b'{"n":%d,"pad":"%s"}\n' % (i, b"y" * 40)])
    out.close()
    backups = out.backups()
    assert len(backups) == 3
    assert all(b.name.startswith("flows-") and b.name.endswith(".json.gz") for b in backups)
    newest = lines_of(backups[-1]) + lines_of(path)
    assert newest[-1].startswith(b'{"n":49,')


def test_a_line_longer_than_the_limit_gets_its_own_file(tmp_path: Path) -> None:
    path = tmp_path / "e.log"
    out = RotatingFile(str(path), max_bytes=50, max_backups=0)
    out.write_lines([b"a\n", b"b" * 120 + b"\n", b"c\n"])
    out.close()
    assert [lines_of(f) for f in [*out.backups(), path]] == [[b"a\n"], [b"b" * 120 + b"\n"], [b"c\n"]]


def test_a_failed_write_raises_and_leaves_whole_lines(tmp_path: Path) -> None:
    out = RotatingFile("/dev/full", max_bytes=10)  # every write fails with ENOSPC
    with pytest.raises(OSError) as info:
        out.write_lines([b"x" * 30 + b"\n"] * 3)
    assert info.value.strerror == "No space left on device"
    assert out.lines_written == 0 and out.rotations == 0  # a device is never renamed
    out.close()
