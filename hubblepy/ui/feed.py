"""Where the map's flows come from: a Hubble server or relay over ``grpc.aio``, or a flows file.

The live feed asks for the last ``--last`` flows and then follows, like ``hubble observe --last N
--follow``, with the CLI's connection settings (:class:`hubblepy.cli.connection.Connection`: server, dial
timeout, TLS, client certificates, ``--tls-allow-insecure``). Our nodes and relay answer
``hubblepy.Batch/GetFlowsJSON`` (batches of JSON lines, no protobuf decoding per flow); any other
Hubble server is read with ``observer.Observer/GetFlows``. When the stream breaks the feed reconnects
and continues after the newest flow it has (``since``), so nothing is counted twice.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

os.environ.setdefault("GRPC_VERBOSITY", "NONE")

import grpc  # noqa: E402
import orjson  # noqa: E402

from hubblepy.api.observer import observer_pb2  # noqa: E402
from hubblepy.cli.connection import TLS_PREFIX, Connection, LiveError  # noqa: E402
from hubblepy.cli.observe_live import GET_FLOWS, GET_FLOWS_JSON  # noqa: E402
from hubblepy.codec.timestamps import canonical_ns  # noqa: E402

Batch = list[tuple[dict[str, Any], bytes | None]]


class FeedError(Exception):
    """A flows file cannot be read (one line, for the command to print)."""


def read_flows_file(stream: BinaryIO, name: str, chunk: int = 4096) -> Iterator[Batch]:
    """The flow records of a ``hubble observe -o json`` file with their lines, in batches (not all at once)."""
    batch: Batch = []
    for number, line in enumerate(stream, 1):
        line = line.strip()
        if not line:
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise FeedError(f"{name}:{number}: invalid JSON: {exc}") from None
        if isinstance(record, dict) and isinstance(record.get("flow"), dict):
            batch.append((record, line))
            if len(batch) >= chunk:
                yield batch
                batch = []
    if batch:
        yield batch


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise LiveError(f"open {path}: {(exc.strerror or 'error').lower()}") from None


def aio_channel(conn: Connection) -> grpc.aio.Channel:
    """A ``grpc.aio`` channel with the same target, TLS and options rules as the CLI's :func:`dial`."""
    target = conn.server
    use_tls = conn.tls or target.startswith(TLS_PREFIX)
    target = target.removeprefix(TLS_PREFIX)
    options: list[tuple[str, Any]] = [
        ("grpc.max_receive_message_length", 64 << 20),
        ("grpc.enable_retries", 0),
    ]
    if not use_tls:
        return grpc.aio.insecure_channel(target, options=options)
    key = _read(conn.tls_client_key_file) if conn.tls_client_key_file else None
    cert = _read(conn.tls_client_cert_file) if conn.tls_client_cert_file else None
    if conn.tls_allow_insecure:
        from hubblepy.cli.live_tls import ProbeError, fetch_server_certificate

        try:
            presented = fetch_server_certificate(
                target, conn.timeout_s, conn.tls_client_cert_file, conn.tls_client_key_file
            )
        except ProbeError as exc:
            raise LiveError(str(exc)) from None
        roots: bytes | None = presented.pem
        options.append(("grpc.ssl_target_name_override", presented.name))
    else:
        roots = b"".join(_read(p) for p in conn.tls_ca_cert_files) or None
        if conn.tls_server_name:
            options.append(("grpc.ssl_target_name_override", conn.tls_server_name))
    credentials = grpc.ssl_channel_credentials(roots, private_key=key, certificate_chain=cert)
    return grpc.aio.secure_channel(target, credentials, options=options)


class LiveFeed:
    """Follows GetFlows of a server or relay and hands batches to ``on_batch``; reconnects on errors."""

    def __init__(
        self,
        conn: Connection,
        last: int,
        on_batch: Callable[[Batch], None],
        on_status: Callable[[str, str], None],
        retry_s: float = 2.0,
    ) -> None:
        self.conn = conn
        self.last = last
        self.on_batch = on_batch
        self.on_status = on_status
        self.retry_s = retry_s
        self.newest_ns = 0  # time of the newest flow seen

    def _request(self) -> Any:
        req = observer_pb2.GetFlowsRequest(follow=True)
        if self.newest_ns:
            req.since.FromNanoseconds(self.newest_ns + 1)
        else:
            req.number = self.last
        return req

    async def run(self) -> None:
        """Run until cancelled."""
        while True:
            channel = None
            try:
                channel = aio_channel(self.conn)
                try:
                    await asyncio.wait_for(channel.channel_ready(), self.conn.timeout_s)
                except TimeoutError:
                    raise LiveError(
                        f"failed to connect to '{self.conn.server}': context deadline exceeded"
                    ) from None
                self.on_status("connected", f"connected to {self.conn.server}")
                await self._stream(channel)
                self.on_status("error", f"{self.conn.server} ended the flow stream")
            except LiveError as exc:
                self.on_status("error", str(exc))
            except grpc.aio.AioRpcError as exc:
                self.on_status(
                    "error", f"{self.conn.server}: rpc error: code = {exc.code().name} desc = {exc.details()}"
                )
            finally:
                if channel is not None:
                    await channel.close()
            await asyncio.sleep(self.retry_s)

    def _deliver(self, batch: Batch) -> None:
        if batch:
            stamp = batch[-1][0]["flow"].get("time") or batch[-1][0].get("time")
            if stamp:
                self.newest_ns = max(self.newest_ns, canonical_ns(stamp))
            self.on_batch(batch)

    async def _stream(self, channel: grpc.aio.Channel) -> None:
        serialize = observer_pb2.GetFlowsRequest.SerializeToString
        json_call = channel.unary_stream(GET_FLOWS_JSON, request_serializer=serialize)
        received = False
        try:
            async for message in json_call(self._request()):
                received = True
                batch: Batch = []
                for line in message.splitlines():
                    record = orjson.loads(line)
                    if isinstance(record.get("flow"), dict):
                        batch.append((record, line))
                self._deliver(batch)
            return
        except grpc.aio.AioRpcError as exc:
            if received or exc.code() != grpc.StatusCode.UNIMPLEMENTED:
                raise
        from hubblepy.codec import message_to_dict

        plain = channel.unary_stream(GET_FLOWS, request_serializer=serialize)
        parse = observer_pb2.GetFlowsResponse.FromString
        async for wire in plain(self._request()):
            record = message_to_dict(parse(wire))
            if isinstance(record.get("flow"), dict):
                self._deliver([(record, None)])
