"""Lab scenarios: a YAML file describing namespaces, pods (labels, ports, servers), a world outside
the cluster, and policies.

See docs/scenario-format.md. :func:`load_scenario` validates the whole file and raises
:class:`ScenarioError` with one line (file, field path, reason) on the first problem; the policies it
names are loaded and validated too (the policy module's errors pass through unchanged).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hubblepy.lab.errors import ScenarioError
from hubblepy.policy import Policy, PolicyError, load_policy_file

SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"
DEFAULT_SCENARIO = SCENARIO_DIR / "payments.yaml"
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
SERVER_KINDS = {"http": 8080, "tcp": 5432, "dns": 53}
HOST_SERVER_KINDS = {"http": 80, "https": 443, "tcp": 5432}  # servers of a world host
_HOSTNAME_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DEFAULT_HOST_TTL = 5  # seconds: short, so rotating answers and expiry show up quickly
MAX_HOST_TTL = 86400
RESOLVER_PORT = 53
PORT_PROTOCOLS = {"TCP": 6, "UDP": 17, "SCTP": 132}
_PORT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
WORLD_NAME = "world"  # the world's netns is <prefix>world; no node may have that name
CLUSTER_DOMAIN = "cluster.local"


@dataclass(frozen=True)
class ServerSpec:
    kind: str  # http | tcp | dns
    port: int
    routes: tuple[str, ...] = ()


@dataclass(frozen=True)
class PodSpec:
    name: str
    namespace: str
    labels: dict[str, str] = field(default_factory=dict)
    service_account: str = "default"
    workload: tuple[str, str] | None = None  # (name, kind)
    servers: tuple[ServerSpec, ...] = ()
    ports: tuple[tuple[str, int, int], ...] = ()  # named container ports: (name, port, protocol number)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class HostSpec:
    """A named host of the world: its addresses (answered in rotation), TTL, and servers.

    ``name`` may start with ``*.``: then it names a family (``*.cardprocessor.com`` answers
    ``eu.cardprocessor.com``, ``us.cardprocessor.com``, ...). Each answer holds ``answers``
    addresses, the next ones of ``addresses`` at every query (a CDN stand-in).
    """

    name: str
    addresses: tuple[str, ...]
    servers: tuple[ServerSpec, ...] = ()
    ttl: int = DEFAULT_HOST_TTL
    answers: int = 1

    @property
    def wildcard(self) -> bool:
        return self.name.startswith("*.")

    def matches(self, qname: str) -> bool:
        """Whether a query name (lowercase, no trailing dot) is this host or one of its family."""
        if self.wildcard:
            return qname.endswith(self.name[1:])
        return qname == self.name


@dataclass(frozen=True)
class WorldSpec:
    """Hosts outside the cluster: one namespace with addresses outside podCIDR, routed via the node.

    ``addresses`` are all of its addresses (those listed under ``world.addresses`` first, then the
    hosts'); with hosts, an upstream resolver answers their names on ``resolver``:53.
    """

    addresses: tuple[str, ...]
    servers: tuple[ServerSpec, ...] = ()
    hosts: tuple[HostSpec, ...] = ()
    resolver: str = ""


@dataclass
class Scenario:
    name: str
    path: str
    node: str
    pod_cidr: ipaddress.IPv4Network
    namespaces: dict[str, dict[str, str]]
    pods: list[PodSpec]
    policy_files: list[str]
    policies: list[Policy]
    world: WorldSpec | None = None


class _Err(Exception):
    pass


def _expect(value: Any, kind: type, path: str, what: str) -> Any:
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _Err(f"{path}: must be {what}")
    return value


def _fields(obj: dict, path: str, allowed: set[str]) -> None:
    for key in obj:
        if key not in allowed:
            raise _Err(f"{path}.{key}: unknown field" if path else f"{key}: unknown field")


def _name(value: Any, path: str) -> str:
    if not isinstance(value, str) or not _DNS_LABEL.match(value) or len(value) > 63:
        raise _Err(f"{path}: {value!r} is not a valid name (lowercase letters, digits and '-')")
    return value


def _labels(value: Any, path: str) -> dict[str, str]:
    value = _expect(value if value is not None else {}, dict, path, "an object of label: value")
    out = {}
    for k, v in value.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise _Err(f"{path}.{k}: label keys and values must be strings")
        out[k] = v
    return out


def _port(value: Any, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise _Err(f"{path}: {value!r} is not a valid port")
    return value


def _server(value: Any, path: str, kinds: dict[str, int] = SERVER_KINDS) -> ServerSpec:
    names = ", ".join(kinds)
    _expect(value, dict, path, f"an object with one of: {names}")
    if len(value) != 1 or next(iter(value)) not in kinds:
        raise _Err(f"{path}: must have exactly one of: {names}")
    kind, opts = next(iter(value.items()))
    opts = _expect(opts if opts is not None else {}, dict, f"{path}.{kind}", "an object")
    _fields(opts, f"{path}.{kind}", {"port", "routes"} if kind in ("http", "https") else {"port"})
    port = _port(opts.get("port", kinds[kind]), f"{path}.{kind}.port")
    routes = _expect(opts.get("routes", []), list, f"{path}.{kind}.routes", "a list of paths")
    for i, r in enumerate(routes):
        if not isinstance(r, str) or not r.startswith("/"):
            raise _Err(f"{path}.{kind}.routes[{i}]: must be a path starting with /")
    return ServerSpec(kind, port, tuple(routes))


def _container_ports(value: Any, path: str) -> tuple[tuple[str, int, int], ...]:
    items = _expect(value or [], list, path, "a list of {name, port, protocol}")
    out = []
    for i, item in enumerate(items):
        ipath = f"{path}[{i}]"
        _expect(item, dict, ipath, "an object with name, port and protocol")
        _fields(item, ipath, {"name", "port", "protocol"})
        name = item.get("name")
        if not isinstance(name, str) or not _PORT_NAME.match(name) or len(name) > 15:
            raise _Err(
                f"{ipath}.name: {name!r} is not a valid port name (IANA_SVC_NAME, at most 15 characters)"
            )
        if not any(c.isalpha() for c in name):
            raise _Err(f"{ipath}.name: {name!r} must contain a letter")
        port = _port(item.get("port"), f"{ipath}.port")
        proto = item.get("protocol", "TCP")
        if proto not in PORT_PROTOCOLS:
            raise _Err(f"{ipath}.protocol: {proto!r} is not TCP, UDP or SCTP")
        out.append((name, port, PORT_PROTOCOLS[proto]))
    names = [(n, p) for n, _, p in out]
    if len(set(names)) != len(names):
        raise _Err(f"{path}: a port name is used twice for one protocol")
    return tuple(out)


def _world_addresses(raw: Any, path: str, cidr: ipaddress.IPv4Network) -> list[str]:
    _expect(raw, list, path, "a non-empty list of IPv4 addresses")
    if not raw:
        raise _Err(f"{path}: must be a non-empty list of IPv4 addresses")
    addresses = []
    for i, a in enumerate(raw):
        try:
            ip = ipaddress.IPv4Address(str(a))
        except ValueError:
            raise _Err(f"{path}[{i}]: {a!r} is not an IPv4 address") from None
        if ip in cidr:
            raise _Err(f"{path}[{i}]: {ip} is inside podCIDR {cidr}; the world lies outside")
        if not ip.is_private and not ip.is_reserved:
            raise _Err(f"{path}[{i}]: {ip} is routable; use TEST-NET ranges such as 192.0.2.0/24")
        addresses.append(str(ip))
    if len(set(addresses)) != len(addresses):
        raise _Err(f"{path}: an address is listed twice")
    return addresses


def _hostname(value: Any, path: str) -> str:
    """A lowercase DNS name of at least two labels, optionally ``*.`` + such a name."""
    if not isinstance(value, str):
        raise _Err(f"{path}: must be a DNS name such as api.example.com")
    name = value.lower().rstrip(".")
    rest = name[2:] if name.startswith("*.") else name
    labels = rest.split(".")
    if (
        len(labels) < 2
        or len(name) > 253
        or not all(_HOSTNAME_LABEL.match(label) and len(label) <= 63 for label in labels)
    ):
        raise _Err(f"{path}: {value!r} is not a DNS name of lowercase labels (a leading '*.' names a family)")
    if rest == CLUSTER_DOMAIN or rest.endswith("." + CLUSTER_DOMAIN):
        raise _Err(f"{path}: {value!r} is inside the cluster domain {CLUSTER_DOMAIN}")
    return name


def _host(value: Any, path: str, cidr: ipaddress.IPv4Network) -> HostSpec:
    _expect(value, dict, path, "an object with name, addresses and servers")
    _fields(value, path, {"name", "addresses", "servers", "ttl", "answers"})
    name = _hostname(value.get("name"), f"{path}.name")
    addresses = _world_addresses(value.get("addresses"), f"{path}.addresses", cidr)
    ttl = value.get("ttl", DEFAULT_HOST_TTL)
    if isinstance(ttl, bool) or not isinstance(ttl, int) or not 0 <= ttl <= MAX_HOST_TTL:
        raise _Err(f"{path}.ttl: must be seconds between 0 and {MAX_HOST_TTL}")
    answers = value.get("answers", 1)
    if isinstance(answers, bool) or not isinstance(answers, int) or not 1 <= answers <= len(addresses):
        raise _Err(f"{path}.answers: must be between 1 and the number of addresses ({len(addresses)})")
    raw = _expect(value.get("servers") or [], list, f"{path}.servers", "a list")
    servers = tuple(_server(s, f"{path}.servers[{i}]", HOST_SERVER_KINDS) for i, s in enumerate(raw))
    ports = [s.port for s in servers]
    if len(set(ports)) != len(ports):
        raise _Err(f"{path}.servers: two servers on the same port")
    return HostSpec(name, tuple(addresses), servers, ttl, answers)


def _world(value: Any, cidr: ipaddress.IPv4Network) -> WorldSpec:
    _expect(value, dict, "world", "an object with addresses, hosts and servers")
    _fields(value, "world", {"addresses", "servers", "hosts"})
    raw_hosts = _expect(value.get("hosts") or [], list, "world.hosts", "a list of hosts")
    hosts = tuple(_host(h, f"world.hosts[{i}]", cidr) for i, h in enumerate(raw_hosts))
    if "addresses" in value or not hosts:
        addresses = _world_addresses(value.get("addresses"), "world.addresses", cidr)
    else:
        addresses = []
    servers = _expect(value.get("servers") or [], list, "world.servers", "a list")
    specs = tuple(_server(s, f"world.servers[{i}]") for i, s in enumerate(servers))
    names: set[str] = set()
    owner = {a: "world.addresses" for a in addresses}
    for i, host in enumerate(hosts):
        if host.name in names:
            raise _Err(f"world.hosts[{i}].name: {host.name} is defined twice")
        names.add(host.name)
        for a in host.addresses:
            if a in owner:
                raise _Err(f"world.hosts[{i}].addresses: {a} is already used by {owner[a]}")
            owner[a] = f"world.hosts[{i}] ({host.name})"
        for server in host.servers:
            if any(s.port == server.port for s in specs):
                raise _Err(
                    f"world.hosts[{i}].servers: port {server.port} is already served on every world "
                    "address by world.servers"
                )
    if hosts and any(s.port == RESOLVER_PORT for s in specs):
        raise _Err(f"world.servers: port {RESOLVER_PORT} is the world resolver's when there are hosts")
    all_addresses = tuple(addresses) + tuple(a for h in hosts for a in h.addresses)
    return WorldSpec(all_addresses, specs, hosts, all_addresses[0] if hosts else "")


def _pod(value: Any, path: str) -> PodSpec:
    _expect(value, dict, path, "an object")
    _fields(value, path, {"name", "namespace", "labels", "serviceAccount", "workload", "servers", "ports"})
    name = _name(value.get("name"), f"{path}.name")
    namespace = _name(value.get("namespace", "default"), f"{path}.namespace")
    labels = _labels(value.get("labels"), f"{path}.labels")
    sa = value.get("serviceAccount", "default")
    _name(sa, f"{path}.serviceAccount")
    workload = None
    if "workload" in value:
        w = _expect(value["workload"], dict, f"{path}.workload", "an object with name and kind")
        _fields(w, f"{path}.workload", {"name", "kind"})
        workload = (
            _name(w.get("name"), f"{path}.workload.name"),
            _expect(w.get("kind", "Deployment"), str, f"{path}.workload.kind", "a string"),
        )
    servers = _expect(value.get("servers") or [], list, f"{path}.servers", "a list")
    specs = tuple(_server(s, f"{path}.servers[{i}]") for i, s in enumerate(servers))
    server_ports = [s.port for s in specs]
    if len(set(server_ports)) != len(server_ports):
        raise _Err(f"{path}.servers: two servers on the same port")
    ports = _container_ports(value.get("ports"), f"{path}.ports")
    return PodSpec(name, namespace, labels, sa, workload, specs, ports)


def parse_scenario(data: Any, path: Path) -> Scenario:
    try:
        _expect(data, dict, "scenario", "a YAML object")
        _fields(data, "", {"name", "node", "podCIDR", "namespaces", "pods", "world", "policies"})
        name = _name(data.get("name", path.stem), "name")
        node = _name(data.get("node", "lab-node"), "node")
        if node == WORLD_NAME:
            raise _Err(f"node: {WORLD_NAME!r} is reserved for the world outside the cluster")
        try:
            cidr = ipaddress.IPv4Network(str(data.get("podCIDR", "10.244.0.0/16")))
        except ValueError as exc:
            raise _Err(f"podCIDR: {exc}") from None
        if cidr.prefixlen > 24:
            raise _Err("podCIDR: must be at least a /24")
        namespaces: dict[str, dict[str, str]] = {}
        raw_ns = _expect(data.get("namespaces") or {}, dict, "namespaces", "an object of namespace: {labels}")
        for ns, spec in raw_ns.items():
            _name(ns, f"namespaces.{ns}")
            spec = _expect(spec or {}, dict, f"namespaces.{ns}", "an object")
            _fields(spec, f"namespaces.{ns}", {"labels"})
            namespaces[ns] = _labels(spec.get("labels"), f"namespaces.{ns}.labels")
        world = _world(data["world"], cidr) if data.get("world") is not None else None
        pods_raw = _expect(data.get("pods"), list, "pods", "a non-empty list")
        if not pods_raw:
            raise _Err("pods: must be a non-empty list")
        pods = [_pod(p, f"pods[{i}]") for i, p in enumerate(pods_raw)]
        seen = set()
        for i, pod in enumerate(pods):
            if pod.key in seen:
                raise _Err(f"pods[{i}]: {pod.key} is defined twice")
            seen.add(pod.key)
            namespaces.setdefault(pod.namespace, {})
        policy_files = _expect(data.get("policies") or [], list, "policies", "a list of policy files")
        files = []
        for i, f in enumerate(policy_files):
            _expect(f, str, f"policies[{i}]", "a file path")
            full = (path.parent / f) if not Path(f).is_absolute() else Path(f)
            if not full.is_file():
                raise _Err(f"policies[{i}]: {f} not found")
            files.append(str(full))
    except _Err as exc:
        raise ScenarioError(f"scenario {path}: {exc}") from None
    policies = []
    for f in files:
        policies += load_policy_file(f)
    return Scenario(name, str(path), node, cidr, namespaces, pods, files, policies, world)


def scenario_path(name: str | Path) -> Path:
    """A scenario file: a path, or the name of a built-in scenario (``payments``, ``pci-cde``, ...)."""
    text = str(name)
    builtin = SCENARIO_DIR / f"{text}.yaml"
    if "/" not in text and not text.endswith((".yaml", ".yml")) and builtin.is_file():
        return builtin
    return Path(name)


def load_scenario(path: str | Path | None = None) -> Scenario:
    """Loads and validates a scenario (the payments scenario when ``path`` is None; a built-in by name)."""
    p = scenario_path(path) if path else DEFAULT_SCENARIO
    try:
        data = yaml.safe_load(p.read_text())
    except OSError as exc:
        raise ScenarioError(f"scenario {p}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ScenarioError(f"scenario {p}: invalid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    return parse_scenario(data, p)


__all__ = [
    "DEFAULT_SCENARIO",
    "HostSpec",
    "PodSpec",
    "PolicyError",
    "Scenario",
    "ScenarioError",
    "ServerSpec",
    "WorldSpec",
    "load_scenario",
    "scenario_path",
]
