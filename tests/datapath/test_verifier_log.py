"""A program the verifier refuses: the error is one line, and the verifier's whole log is kept."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hubblepy.datapath import Datapath, DatapathUnavailable, VerifierRejected

from .conftest import require_datapath

pytestmark = pytest.mark.root

# from_container dereferences a map value without the NULL check the verifier demands
REFUSED = """
#include <uapi/linux/bpf.h>
BPF_HASH(counts, u32, u64, 16);
int from_container(struct __sk_buff *skb)
{
    u32 key = skb->len;
    u64 *value = counts.lookup(&key);
    return *value;
}
int to_container(struct __sk_buff *skb)
{
    return 0;
}
"""


def test_refused_program_keeps_the_whole_verifier_log(tmp_path: Path) -> None:
    require_datapath()
    (tmp_path / "endpoint.c").write_text(REFUSED)
    with pytest.raises(VerifierRejected) as info:
        Datapath(bpf_dir=tmp_path)
    exc = info.value
    assert isinstance(exc, DatapathUnavailable)  # callers that catch the old error still do
    message = str(exc)
    assert "\n" not in message
    assert "from_container" in message and "invalid mem access 'map_value_or_null'" in message
    # the whole log: the instructions walked, the refusal and the verifier's summary
    assert "call bpf_map_lookup_elem" in exc.log
    assert "R0 invalid mem access 'map_value_or_null'" in exc.log
    assert "processed " in exc.log
    assert exc.log_path and exc.log_path in message
    try:
        written = Path(exc.log_path).read_text()
        assert written.endswith(exc.log)
    finally:
        os.unlink(exc.log_path)


def test_compile_error_is_one_line(tmp_path: Path) -> None:
    require_datapath()
    (tmp_path / "endpoint.c").write_text(
        "int from_container(struct __sk_buff *skb) { return undefined_name; }\n"
    )
    with pytest.raises(DatapathUnavailable) as info:
        Datapath(bpf_dir=tmp_path)
    assert not isinstance(info.value, VerifierRejected)
    assert "\n" not in str(info.value) and "endpoint.c" in str(info.value)
