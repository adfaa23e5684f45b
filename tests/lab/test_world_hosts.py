"""The world's names without namespaces: scenario hosts, the world resolver, kube-dns forwarding, lab CA."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import struct
import threading
from contextlib import contextmanager
from pathlib import Path

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from hubblepy.lab.scenario import DEFAULT_SCENARIO, ScenarioError, load_scenario
from hubblepy.lab.servers import ZoneFile, serve_dns, serve_http, serve_resolver
from hubblepy.lab.tls import LabCA
from hubblepy.lab.worlddns import NameEntry, WorldResolver, write_hosts_file

STRIPE = NameEntry("api.stripe.com", ("192.0.2.20", "192.0.2.21"), 5)
PROCESSORS = NameEntry("*.cardprocessor.com", ("203.0.113.10", "203.0.113.11", "203.0.113.12"), 7, 2)


def _scenario(tmp_path: Path, world: str):
    path = tmp_path / "s.yaml"
    path.write_text(f"name: x\npods:\n  - {{name: a}}\nworld:\n{world}")
    return load_scenario(path)


def test_payments_world_has_the_seeds_names():
    world = load_scenario(DEFAULT_SCENARIO).world
    assert world is not None
    names = {h.name: h for h in world.hosts}
    assert set(names) == {"api.stripe.com", "example.com", "*.cardprocessor.com"}
    assert all(s.kind == "https" and s.port == 443 for h in world.hosts for s in h.servers)
    assert len(names["*.cardprocessor.com"].addresses) == 3
    assert world.resolver == "192.0.2.10" and world.addresses[0] == "192.0.2.10"
    assert set(world.addresses) >= {a for h in world.hosts for a in h.addresses}


def test_hosts_without_world_addresses_and_defaults(tmp_path):
    world = _scenario(
        tmp_path,
        "  hosts:\n    - name: API.Example.com.\n      addresses: [192.0.2.30]\n      servers: [{https: {}}, {http: {}}]\n",
    ).world
    assert world is not None
    (host,) = world.hosts
    assert (host.name, host.ttl, host.answers) == ("api.example.com", 5, 1)
    assert [(s.kind, s.port) for s in host.servers] == [("https", 443), ("http", 80)]
    assert world.addresses == ("192.0.2.30",) and world.resolver == "192.0.2.30"


@pytest.mark.parametrize(
    "world, expected",
    [
        ("  hosts:\n    - {name: x, addresses: [192.0.2.1]}\n", "world.hosts[0].name: 'x' is not a DNS name"),
        (
            "  hosts:\n    - {name: 'a.*.com', addresses: [192.0.2.1]}\n",
            "world.hosts[0].name: 'a.*.com' is not",
        ),
        (
            "  hosts:\n    - {name: db.svc.cluster.local, addresses: [192.0.2.1]}\n",
            "world.hosts[0].name: 'db.svc.cluster.local' is inside the cluster domain cluster.local",
        ),
        (
            "  hosts:\n    - {name: a.com, addresses: [8.8.8.8]}\n",
            "world.hosts[0].addresses[0]: 8.8.8.8 is routable",
        ),
        (
            "  hosts:\n    - {name: a.com, addresses: []}\n",
            "world.hosts[0].addresses: must be a non-empty list",
        ),
        (
            "  addresses: [192.0.2.1]\n  hosts:\n    - {name: a.com, addresses: [192.0.2.1]}\n",
            "world.hosts[0].addresses: 192.0.2.1 is already used by world.addresses",
        ),
        (
            "  hosts:\n    - {name: a.com, addresses: [192.0.2.1]}\n    - {name: a.com, addresses: [192.0.2.2]}\n",
            "world.hosts[1].name: a.com is defined twice",
        ),
        (
            "  hosts:\n    - {name: a.com, addresses: [192.0.2.1], answers: 2}\n",
            "world.hosts[0].answers: must be between 1 and the number of addresses (1)",
        ),
        (
            "  hosts:\n    - {name: a.com, addresses: [192.0.2.1], ttl: -1}\n",
            "world.hosts[0].ttl: must be seconds",
        ),
        (
            "  hosts:\n    - {name: a.com, addresses: [192.0.2.1], servers: [{dns: {}}]}\n",
            "world.hosts[0].servers[0]: must have exactly one of: http, https, tcp",
        ),
        (
            "  addresses: [192.0.2.1]\n  servers: [{http: {port: 80}}]\n"
            "  hosts:\n    - {name: a.com, addresses: [192.0.2.2], servers: [{http: {port: 80}}]}\n",
            "world.hosts[0].servers: port 80 is already served on every world address by world.servers",
        ),
        (
            "  addresses: [192.0.2.1]\n  servers: [{dns: {}}]\n  hosts:\n    - {name: a.com, addresses: [192.0.2.2]}\n",
            "world.servers: port 53 is the world resolver's when there are hosts",
        ),
        (
            "  hosts:\n    - {name: a.com, addresses: [192.0.2.1], colour: red}\n",
            "world.hosts[0].colour: unknown field",
        ),
        (
            "  servers: [{https: {}}]\n  addresses: [192.0.2.1]\n",
            "world.servers[0]: must have exactly one of",
        ),
    ],
)
def test_host_errors_name_the_field(tmp_path, world, expected):
    with pytest.raises(ScenarioError) as info:
        _scenario(tmp_path, world)
    assert f"scenario {tmp_path / 's.yaml'}: {expected}" in str(info.value)


def _ask(resolver: WorldResolver, name: str, qtype: str = "A") -> dns.message.Message:
    wire = resolver.answer(dns.message.make_query(name, qtype).to_wire())
    assert wire is not None
    return dns.message.from_wire(wire)


def _addresses(reply: dns.message.Message) -> list[str]:
    return sorted(rd.address for rrset in reply.answer for rd in rrset)


def test_resolver_rotates_answers_per_name_with_the_hosts_ttl():
    r = WorldResolver([STRIPE, PROCESSORS])
    first, second, third = (_ask(r, "api.stripe.com") for _ in range(3))
    assert [_addresses(m) for m in (first, second, third)] == [["192.0.2.20"], ["192.0.2.21"], ["192.0.2.20"]]
    assert first.answer[0].ttl == 5 and first.rcode() == dns.rcode.NOERROR
    assert first.flags & dns.flags.AA and first.flags & dns.flags.QR
    # a family: each name rotates on its own, two addresses per answer
    eu = [_addresses(_ask(r, "eu.cardprocessor.com")) for _ in range(3)]
    assert eu == [
        ["203.0.113.10", "203.0.113.11"],
        ["203.0.113.11", "203.0.113.12"],
        ["203.0.113.10", "203.0.113.12"],
    ]
    us = _ask(r, "US.CardProcessor.com.")
    assert _addresses(us) == ["203.0.113.10", "203.0.113.11"] and us.answer[0].ttl == 7
    assert _addresses(_ask(r, "a.b.cardprocessor.com"))  # DNS wildcards cover any depth


def test_resolver_nxdomain_nodata_and_malformed():
    r = WorldResolver([STRIPE, PROCESSORS])
    assert _ask(r, "cardprocessor.com").rcode() == dns.rcode.NXDOMAIN  # the family, not its parent
    assert _ask(r, "example.org").rcode() == dns.rcode.NXDOMAIN
    aaaa = _ask(r, "api.stripe.com", "AAAA")
    assert aaaa.rcode() == dns.rcode.NOERROR and not aaaa.answer
    assert r.answer(b"\x00\x01") is None
    garbage = r.answer(b"\x12\x34\x01\x00\x00\x01" + bytes(6) + b"\x05ab")
    assert garbage is not None and garbage[:2] == b"\x12\x34" and garbage[3] & 0xF == dns.rcode.FORMERR
    response = dns.message.make_response(dns.message.make_query("api.stripe.com", "A")).to_wire()
    assert r.answer(response) is None  # never answer an answer


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def _serving(servers):
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    for t in threads:
        t.start()
    try:
        yield
    finally:
        for s in servers:
            s.shutdown()
            s.server_close()


def _udp(port: int, query: dns.message.Message) -> dns.message.Message:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.settimeout(10)
        u.sendto(query.to_wire(), ("127.0.0.1", port))
        return dns.message.from_wire(u.recv(65535))


def _tcp(port: int, query: dns.message.Message) -> dns.message.Message:
    wire = query.to_wire()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as t:
        t.sendall(struct.pack("!H", len(wire)) + wire)
        size = struct.unpack("!H", t.recv(2))[0]
        data = b""
        while len(data) < size:
            data += t.recv(size - len(data))
    return dns.message.from_wire(data)


def test_kube_dns_forwards_names_outside_the_cluster_over_the_clients_transport(tmp_path):
    hosts = tmp_path / "hosts.json"
    write_hosts_file(hosts, [STRIPE, PROCESSORS])
    zone = tmp_path / "zone.json"
    zone.write_text(json.dumps({"api.payments.svc.cluster.local": "10.244.0.11"}))
    upstream, port = _free_port(), _free_port()
    with (
        _serving(serve_resolver(upstream, str(hosts), ["127.0.0.1"])),
        _serving(serve_dns(port, ZoneFile(str(zone)), ("127.0.0.1", upstream))),
    ):
        q = dns.message.make_query("api.stripe.com", "A")
        one, two = _udp(port, q), _tcp(port, q)
        assert one.id == two.id == q.id
        assert {_addresses(one)[0], _addresses(two)[0]} == {"192.0.2.20", "192.0.2.21"}
        assert _udp(port, dns.message.make_query("nowhere.example", "A")).rcode() == dns.rcode.NXDOMAIN
        cluster = _tcp(port, dns.message.make_query("api.payments.svc.cluster.local", "A"))
        assert _addresses(cluster) == ["10.244.0.11"]
        missing = _udp(port, dns.message.make_query("db.payments.svc.cluster.local", "A"))
        assert missing.rcode() == dns.rcode.NXDOMAIN  # cluster names never leave kube-dns
    dead = _free_port()
    with _serving(serve_dns(port, ZoneFile(str(zone)), ("127.0.0.1", dead))):
        for ask in (_udp, _tcp):  # no answer from upstream (UDP: after the timeout): SERVFAIL
            q = dns.message.make_query("api.stripe.com", "A")
            failed = ask(port, q)
            assert failed.rcode() == dns.rcode.SERVFAIL and failed.id == q.id


def test_https_with_a_certificate_of_the_lab_ca(tmp_path):
    ca = LabCA.create(tmp_path)
    assert oct((tmp_path / "ca.key").stat().st_mode & 0o777) == "0o600"
    issued = ca.issue("*.cardprocessor.com")
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(issued.cert, issued.key)
    port = _free_port()
    with _serving([serve_http(port, ["/pay"], "127.0.0.1", server_ctx)]):
        trusting = ssl.create_default_context(cafile=str(ca.cert_path))
        trusting.verify_flags |= ssl.VERIFY_X509_STRICT
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            trusting.wrap_socket(raw, server_hostname="eu.cardprocessor.com") as tls,
        ):
            tls.sendall(b"GET /pay HTTP/1.1\r\nHost: eu.cardprocessor.com\r\nConnection: close\r\n\r\n")
            assert tls.recv(100).startswith(b"HTTP/1.1 200")
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            pytest.raises(ssl.SSLCertVerificationError),
        ):
            trusting.wrap_socket(raw, server_hostname="api.stripe.com")  # the wrong name
        other = LabCA.create(tmp_path / "other")
        stranger = ssl.create_default_context(cafile=str(other.cert_path))
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            pytest.raises(ssl.SSLCertVerificationError),
        ):
            stranger.wrap_socket(raw, server_hostname="eu.cardprocessor.com")  # another CA
        # after a failed handshake the server still serves
        conn = http.client.HTTPSConnection(
            "127.0.0.1", port, timeout=10, context=ssl._create_unverified_context()
        )
        conn.request("GET", "/nope")
        assert conn.getresponse().status == 404
        conn.close()
