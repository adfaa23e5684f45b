"""The fuzz targets (fuzz/targets.py) accept their seed corpus and reject bad input the designed way."""

import importlib.util
import os
import subprocess
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


def test_a_broken_proxy_reply_is_a_crash():
    # the fuzzer runs the proxy from its Python source (fuzz/fuzz_one.py), where a module function can
    # be replaced; compiled code calls its own (hence a process of its own with HUBBLEPY_NATIVE=0)
    probe = f"""
import importlib.util, sys
from hubblepy import native
from hubblepy.proxy import http
assert not native.is_compiled(http)
spec = importlib.util.spec_from_file_location("fuzz_targets", {str(FUZZ / "targets.py")!r})
targets = importlib.util.module_from_spec(spec)
spec.loader.exec_module(targets)
whole = http._response
http._response = lambda *args, **kwargs: whole(*args, **kwargs)[:-3]  # shorter than its Content-Length
run = targets.TARGETS["httprequest"]()
try:
    run(open({str(FUZZ / "corpus" / "httprequest" / "post-denied")!r}, "rb").read())
except AssertionError as exc:
    print("crash:", exc)
"""
    env = dict(os.environ, HUBBLEPY_NATIVE="0", PYTHONPATH=str(FUZZ.parent))
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("crash:") and "incomplete response" in done.stdout, done.stdout
