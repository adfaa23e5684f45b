"""The access-log writer on a real unix socket: a node reading slower than the proxy writes gets
backpressure (``on_congestion``) before any record is dropped, and the proxy's wait is bounded."""

from __future__ import annotations

import asyncio
import contextlib
import socket

import pytest
import uvloop

from hubblepy.proxy import http
from hubblepy.proxy.accesslog import AccessLogWriter


def test_a_slow_reader_congests_the_writer_before_any_record_is_lost(tmp_path):
    path = str(tmp_path / "access.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    events: list[bool] = []

    async def run() -> tuple[int, int]:
        writer = AccessLogWriter(path, batch=1, high_water=64 << 10, low_water=8 << 10)
        writer.on_congestion = events.append
        await writer.start()
        conn, _ = listener.accept()  # the node accepts but does not read yet
        record = b'{"Type":"Request","pad":"' + b"x" * 1000 + b'"}'
        sent = 0
        while not events and sent < 100_000:
            writer.emit_bytes(record)
            sent += 1
            await asyncio.sleep(0)
        assert events == [True]
        conn.setblocking(False)
        received = 0
        while received < sent * (len(record) + 1):  # the node catches up
            await asyncio.sleep(0.001)
            with contextlib.suppress(BlockingIOError):
                received += len(conn.recv(1 << 20))
        writer.close()
        conn.close()
        return writer.sent, writer.lost

    sent, lost = uvloop.run(run())
    listener.close()
    assert events[:2] == [True, False]  # (closing the writer says False once more)
    assert lost == 0 and sent > 0


def test_congestion_pauses_client_connections_for_a_bounded_time(monkeypatch):
    monkeypatch.setattr(http, "LOG_WAIT", 0.05)

    async def run() -> list[bool]:
        server = http.ProxyServer(http.Options(), None, None)
        transport = Transport()
        http.ClientConnection(server).connection_made(transport)  # type: ignore[arg-type]
        server.congestion(True)
        assert server.log_congested
        await asyncio.sleep(0.2)  # the node never catches up: clients are read again
        assert not server.log_congested
        return transport.reading

    assert uvloop.run(run()) == [False, True]


class Transport:
    """Stands in for a client's TCP transport: records pause_reading (False) and resume_reading (True)."""

    def __init__(self) -> None:
        self.reading: list[bool] = []

    def set_write_buffer_limits(self, high: int) -> None:
        pass

    def get_extra_info(self, key: str):
        return ("127.0.0.1", 1)

    def pause_reading(self) -> None:
        self.reading.append(False)

    def resume_reading(self) -> None:
        self.reading.append(True)


@pytest.mark.parametrize("congested", [True, False])
def test_a_new_connection_starts_paused_only_while_the_log_is_congested(congested):
    async def run() -> set[str]:
        server = http.ProxyServer(http.Options(), None, None)
        server.log_congested = congested
        conn = http.ClientConnection(server)
        conn.connection_made(Transport())  # type: ignore[arg-type]
        return conn.paused

    assert uvloop.run(run()) == ({"log"} if congested else set())
