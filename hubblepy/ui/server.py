"""The aiohttp application behind `hubble ui`: the page, a WebSocket of map deltas, the flow table.

Flows are aggregated here (:class:`hubblepy.ui.model.FlowMap`); the browser never sees single flows
except in the flow table it asks for. Every ``batch_interval`` seconds each page gets one message
with the edges of its namespace that changed (absolute counts, so a page that falls behind just
gets the newest state of each edge), the nodes those edges join, the namespace counts and the
feed's status. A page says which namespace it shows with ``{"namespace": NAME}`` and then gets a
snapshot of it.

Routes: ``/`` (the page), ``/static/...``, ``/ws``, ``/api/flows?edge=ID|node=ID[&limit=N]`` (table
rows, newest first, each with its whole JSON), ``/api/status``.

The service has no login: it listens on loopback by default. Requests must name this server in
``Host`` (when it listens on loopback: stops DNS-rebinding pages) and, when they carry an
``Origin``, come from the page itself (stops other sites' scripts from reading flows).
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from hubblepy.ui.feed import Batch
from hubblepy.ui.model import Edge, FlowMap

STATIC_DIR = Path(__file__).resolve().parent / "static"
MAX_TABLE_ROWS = 5000


@dataclass(eq=False)
class _Page:
    ws: web.WebSocketResponse
    namespace: str | None = None
    snapshot: bool = False
    pending: dict[str, Edge] = field(default_factory=dict)
    wake: asyncio.Event = field(default_factory=asyncio.Event)


def split_listen_address(address: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT``; an empty host means every address) -> (host, port)."""
    host, sep, port_text = address.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"invalid --listen-address {address!r}: expected HOST:PORT")
    host = host.removeprefix("[").removesuffix("]")
    return host, int(port_text)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class UiServer:
    """Holds the map, the pages connected to it and the feed status."""

    def __init__(self, flowmap: FlowMap, batch_interval: float = 0.5, source: str = "") -> None:
        self.map = flowmap
        self.batch_interval = batch_interval
        self.source = source
        self.status = {"state": "starting", "text": f"connecting to {source}" if source else ""}
        self.pages: set[_Page] = set()
        self.rate = 0.0
        self._rate_mark = (time.monotonic(), 0)
        self.allowed_hosts: set[str] | None = None

    # -- feed side ---------------------------------------------------------------------------------

    def on_batch(self, batch: Batch) -> None:
        add = self.map.add
        for record, raw in batch:
            add(record, raw)

    def reset_rate(self) -> None:
        """Count the rate from now on (after a file was loaded at once)."""
        self._rate_mark = (time.monotonic(), self.map.total)

    def on_status(self, state: str, text: str) -> None:
        self.status = {"state": state, "text": text}

    def stats(self) -> dict[str, Any]:
        return {
            "flows": self.map.total,
            "rate": round(self.rate, 1),
            "nodes": len(self.map.nodes),
            "edges": len(self.map.edges),
            "verdicts": dict(self.map.verdicts),
        }

    def tick(self) -> None:
        """Hand the changed edges to every page and wake its sender."""
        now = time.monotonic()
        then, count = self._rate_mark
        if now - then >= 1.0:
            self.rate = (self.map.total - count) / (now - then)
            self._rate_mark = (now, self.map.total)
        changed = self.map.take_changes()
        for page in self.pages:
            if page.namespace is not None and not page.snapshot:
                for edge in self.map.namespace_edges(page.namespace, changed):
                    page.pending[edge.id] = edge
            page.wake.set()

    async def run_ticker(self) -> None:
        while True:
            await asyncio.sleep(self.batch_interval)
            self.tick()

    # -- page side ---------------------------------------------------------------------------------

    def _message(self, page: _Page) -> bytes:
        if page.snapshot:
            page.snapshot = False
            page.pending.clear()
            kind, edges = "snapshot", self.map.namespace_edges(page.namespace or "")
        else:
            kind, edges = "delta", list(page.pending.values())
            page.pending.clear()
        message: dict[str, Any] = {"type": kind, "namespace": page.namespace}
        if page.namespace is not None:
            message.update(self.map.view(edges))
        message["namespaces"] = dict(self.map.namespaces)
        message["status"] = self.status
        message["stats"] = self.stats()
        return orjson.dumps(message)

    async def _sender(self, page: _Page) -> None:
        while not page.ws.closed:
            await page.wake.wait()
            page.wake.clear()
            try:
                await page.ws.send_str(self._message(page).decode())
            except (ConnectionError, RuntimeError):  # the page went away mid-send
                return

    async def websocket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=1 << 16)
        await ws.prepare(request)
        page = _Page(ws)
        self.pages.add(page)
        sender = asyncio.create_task(self._sender(page))
        page.wake.set()
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                try:
                    data = orjson.loads(msg.data)
                except orjson.JSONDecodeError:
                    continue
                if isinstance(data, dict) and isinstance(data.get("namespace"), str):
                    page.namespace = data["namespace"]
                    page.snapshot = True
                    page.wake.set()
        finally:
            self.pages.discard(page)
            sender.cancel()
        return ws

    async def flows(self, request: web.Request) -> web.Response:
        query = request.query
        try:
            limit = max(1, min(int(query.get("limit", "1000")), MAX_TABLE_ROWS))
        except ValueError:
            raise web.HTTPBadRequest(text="limit must be a number") from None
        edge_id, node_id = query.get("edge", ""), query.get("node", "")
        if not edge_id and not node_id:
            raise web.HTTPBadRequest(text="give edge=ID or node=ID")
        rows = self.map.flows(edge_id=edge_id, node_id=node_id, limit=limit)
        edge = self.map.edges.get(edge_id)
        body = {"rows": rows, "edge": edge.to_json() if edge else None}
        return web.Response(body=orjson.dumps(body), content_type="application/json")

    async def status_handler(self, request: web.Request) -> web.Response:
        body = {
            "status": self.status,
            "stats": self.stats(),
            "namespaces": dict(self.map.namespaces),
            "pages": len(self.pages),
        }
        return web.Response(body=orjson.dumps(body), content_type="application/json")

    async def index(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    # -- request checks ------------------------------------------------------------------------------

    @web.middleware
    async def guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
        host = request.headers.get("Host", "")
        if self.allowed_hosts is not None and host.lower() not in self.allowed_hosts:
            raise web.HTTPForbidden(text=f"unexpected Host {host!r}")
        origin = request.headers.get("Origin")
        if origin is not None and origin.lower() not in (f"http://{host}".lower(), f"https://{host}".lower()):
            raise web.HTTPForbidden(text=f"cross-origin request from {origin!r} refused")
        response = await handler(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        return response

    def set_listen(self, host: str, port: int) -> None:
        """Only loopback listeners check ``Host``: there the names are known."""
        if host and _is_loopback(host):
            names = {"localhost", "127.0.0.1", "[::1]", host if ":" not in host else f"[{host}]"}
            self.allowed_hosts = {f"{name}:{port}" for name in names}
            if port == 80:
                self.allowed_hosts |= names
        else:
            self.allowed_hosts = None

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.guard])
        app.router.add_get("/", self.index)
        app.router.add_get("/ws", self.websocket)
        app.router.add_get("/api/flows", self.flows)
        app.router.add_get("/api/status", self.status_handler)
        app.router.add_get("/favicon.ico", _no_content)
        app.router.add_static("/static/", STATIC_DIR, follow_symlinks=False)
        return app


async def _no_content(request: web.Request) -> web.StreamResponse:
    return web.Response(status=204)


async def serve(server: UiServer, listen_address: str, feed: Any = None, ready: Any = None) -> None:
    """Serve until cancelled; ``ready(url)`` is called once the socket listens."""
    host, port = split_listen_address(listen_address)
    runner = web.AppRunner(server.app(), access_log=None, handle_signals=False)
    await runner.setup()
    tasks = []
    try:
        site = web.TCPSite(runner, host or None, port)
        await site.start()
        bound = runner.addresses[0]
        port = bound[1]
        server.set_listen(host, port)
        shown = host if host and ":" not in host else (f"[{host}]" if host else "127.0.0.1")
        tasks.append(asyncio.create_task(server.run_ticker()))
        if feed is not None:
            tasks.append(asyncio.create_task(feed.run()))
        if ready is not None:
            ready(f"http://{shown}:{port}")
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await runner.cleanup()
