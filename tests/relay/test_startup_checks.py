"""Bad flags of `hubble agent` and `hubble-relay` end the start-up with one line and exit 1.

Also `hubble observe` on a closed pipe: it ends killed by SIGPIPE (status 141 in a shell), as the Go
binary does, for a file and for a live server.
"""

import signal
import subprocess
import sys

import pytest

liveprocs = sys.modules["liveprocs"]

AGENT = [sys.executable, "-m", "hubblepy.observer", "--node-name", "n1"]
RELAY = [sys.executable, "-m", "relay", "--health-listen-address", ""]


def start_error(argv):
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=liveprocs.clean_env())
    return proc.returncode, proc.stderr


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ["--listen-address", "127.0.0.1:99999"],
            'hubble agent: invalid --listen-address "127.0.0.1:99999": listen tcp: address 127.0.0.1:99999: invalid port',
        ),
        (
            ["--listen-address", "127.0.0.1:-1"],
            'hubble agent: invalid --listen-address "127.0.0.1:-1": listen tcp: address 127.0.0.1:-1: invalid port',
        ),
        (
            ["--listen-address", "127.0.0.1:0", "--rate", "-5"],
            "hubble agent: invalid --rate -5: must be 0 (as fast as possible) or a positive rate",
        ),
        (
            ["--listen-address", "127.0.0.1:0", "--rate", "nan"],
            "hubble agent: invalid --rate nan: must be 0 (as fast as possible) or a positive rate",
        ),
        (
            ["--listen-address", "127.0.0.1:0", "--peers", "=127.0.0.1:4244"],
            'hubble agent: invalid --peers entry "=127.0.0.1:4244": empty node name',
        ),
        (
            ["--listen-address", "127.0.0.1:0", "--max-workers", "0"],
            "hubble agent: invalid --max-workers 0: must be at least 1",
        ),
    ],
)
def test_agent_rejects(extra, message):
    code, err = start_error([*AGENT, *extra])
    assert (code, err) == (1, message + "\n")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--peers", ",,,=:"], 'invalid --peers ",,,=:": empty entry'),
        (["--peers", "=:"], 'invalid --peers entry "=:": empty node name'),
        (["--peers", "a=:"], 'invalid --peers ":": address :: missing host'),
        (["--peers", "a=127.0.0.1:0"], 'invalid --peers "127.0.0.1:0": address 127.0.0.1:0: invalid port'),
        (["--peers", "127.0.0.1"], 'invalid --peers "127.0.0.1": address 127.0.0.1: missing port in address'),
        (
            ["--peers", "127.0.0.1:1", "--listen-address", "127.0.0.1:99999"],
            'invalid --listen-address "127.0.0.1:99999": listen tcp: address 127.0.0.1:99999: invalid port',
        ),
        (
            ["--peers", "127.0.0.1:1", "--retry-timeout=-1s"],
            'invalid argument "-1s" for "--retry-timeout" flag: must be positive',
        ),
        (
            ["--peers", "127.0.0.1:1", "--error-aggregation-window=-1s"],
            'invalid argument "-1s" for "--error-aggregation-window" flag: must be 0 or more',
        ),
        (["--peers", "127.0.0.1:1", "--max-workers", "-3"], "invalid --max-workers -3: must be at least 1"),
        (
            ["--peers", "127.0.0.1:1", "--sort-buffer-drain-timeout", "0s"],
            'invalid argument "0s" for "--sort-buffer-drain-timeout" flag: must be positive',
        ),
    ],
)
def test_relay_rejects(extra, message):
    code, err = start_error([*RELAY, "--listen-address", "127.0.0.1:0", *extra])
    assert (code, err) == (1, f"hubble-relay: {message}\n")


def read_one_line_then_close(argv):
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=liveprocs.clean_env())
    first = proc.stdout.readline()
    proc.stdout.close()
    try:
        proc.wait(60)
    finally:
        proc.kill()
    err = proc.stderr.read()
    proc.stderr.close()
    return first, proc.returncode, err


def test_observe_file_on_closed_pipe_dies_of_sigpipe(tmp_path):
    flows = tmp_path / "many.jsonl"
    flows.write_bytes(liveprocs.FLOWS.read_bytes() * 200)  # far more than a pipe buffer holds
    first, code, err = read_one_line_then_close(
        [*liveprocs.hubble_cli(), "observe", "--input-file", str(flows), "-o", "json"]
    )
    assert first.startswith(b'{"flow"')
    assert code == -signal.SIGPIPE, err
    assert err == b""


def test_observe_live_on_closed_pipe_dies_of_sigpipe(procs):
    node = procs.agent("n1", "--replay", str(liveprocs.FLOWS), "--rate", "0")
    first, code, err = read_one_line_then_close(
        [*liveprocs.hubble_cli(), "observe", "--server", node.address, "--follow", "-o", "json"]
    )
    assert first.startswith(b'{"flow"')
    assert code == -signal.SIGPIPE, err
