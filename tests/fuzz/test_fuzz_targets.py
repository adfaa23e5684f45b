"""The fuzz targets (fuzz/targets.py) accept their seed corpus and reject bad input the designed way."""

import importlib.util
import sys
from pathlib import Path

import pytest

FUZZ = Path(__file__).resolve().parents[2] / "fuzz"
_spec = importlib.util.spec_from_file_location("fuzz_targets", FUZZ / "targets.py")
targets = importlib.util.module_from_spec(_spec)
sys.modules["fuzz_targets"] = targets
_spec.loader.exec_module(targets)


@pytest.fixture(scope="module", params=sorted(targets.TARGETS))
def target(request):
    return request.param, targets.TARGETS[request.param]()


def test_seed_corpus_passes(target):
    name, run = target
    seeds = sorted((FUZZ / "corpus" / name).iterdir())
    assert seeds, f"no seeds for {name}"
    for seed in seeds:
        run(seed.read_bytes())


@pytest.mark.parametrize(
    "data", [b"", b"\x00", b"\xff" * 64, b"{", b'{"flow":{"uuid":"\\ud800"}}', b"- [", b"\x04" + b"\x00" * 40]
)
def test_bad_input_is_handled(target, data):
    _, run = target
    run(data)  # a clean rejection returns; anything else raises


def test_internal_parser_errors_are_crashes(monkeypatch):
    from hubblepy.parser import Parser

    def broken(self, data, ts, uid):
        raise ValueError("boom")

    monkeypatch.setattr(Parser, "_trace", broken)
    run = targets.TARGETS["datapath"]()  # built after the patch: its decoder table holds `broken`
    with pytest.raises(AssertionError, match="internal parser error: ValueError: boom"):
        run((FUZZ / "corpus" / "datapath" / "trace-tcp").read_bytes())


def test_a_broken_proxy_reply_is_a_crash(monkeypatch):
    from hubblepy.proxy import http

    whole = http._response

    def cut(*args, **kwargs):
        return whole(*args, **kwargs)[:-3]  # a 403 shorter than its Content-Length

    monkeypatch.setattr(http, "_response", cut)
    run = targets.TARGETS["httprequest"]()
    with pytest.raises(AssertionError, match="incomplete response"):
        run((FUZZ / "corpus" / "httprequest" / "post-denied").read_bytes())
