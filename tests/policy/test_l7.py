"""L7 HTTP rules at the compiler level: parsing and rejection, redirect entries, the proxy's rule table.

Each rule kind is checked allowed and denied through the table the proxy consults (after a JSON round
trip, as the proxy loads it), and the Cilium merge rules: per-peer rule sets, an L4-only allow for the
same peer wildcarding L7, ``http: [{}]``, deny precedence, the L3-only identity vs any-peer L7 port.
"""

from __future__ import annotations

import pytest

from hubblepy.policy import (
    ACTION_ALLOW,
    ACTION_DENY,
    EGRESS,
    INGRESS,
    CookieJar,
    Endpoint,
    IdentityAllocator,
    PolicyError,
    compile_policies,
    parse_policies,
    pod_labels,
)
from hubblepy.policy.l7 import HTTP_PROXY_PORT, L7Table, Request, table_from_json, table_to_json

TCP = 6
HOST = 1


class World:
    def __init__(self) -> None:
        self.ids = IdentityAllocator()
        self.cookies = CookieJar()
        self.endpoints: dict[str, Endpoint] = {}
        for name in ("frontend", "api", "admin", "batch"):
            labels = pod_labels("payments", {"app": name})
            self.endpoints[name] = Endpoint(100 + len(self.endpoints), self.ids.allocate(labels), labels)

    def ep(self, name: str) -> int:
        return self.endpoints[name].ep_id

    def ident(self, name: str) -> int:
        return self.endpoints[name].identity

    def compile(self, text: str):
        out = compile_policies(
            parse_policies(text), self.endpoints.values(), dict(self.ids.items()), self.cookies
        )
        # what the proxy sees: the table after its JSON round trip
        return out, table_from_json(table_to_json(out.l7))

    def entries(self, out, name: str, direction: int = INGRESS) -> dict[tuple, tuple]:
        ep = self.ep(name)
        return {
            (k.identity, k.dport, k.proto): (v.action, v.proxy_port)
            for k, v in out.entries.items()
            if k.ep_id == ep and k.direction == direction
        }

    def rule_text(self, cookie: int) -> str:
        ref = self.cookies.lookup(cookie)
        return ref.describe() if ref else "?"


def cnp(name: str, body: str) -> str:
    return (
        f"apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata:\n  name: {name}\n"
        f"  namespace: payments\nspec:\n{body}"
    )


def ingress_http(rules: str, peer: str = "frontend", port: str = "8080", extra: str = "") -> str:
    return cnp(
        "api-http",
        f"""  endpointSelector: {{matchLabels: {{app: api}}}}
  ingress:
    - fromEndpoints: [{{matchLabels: {{app: {peer}}}}}]
      toPorts:
        - ports: [{{port: "{port}", protocol: TCP}}]
          rules:
            http:
{rules}{extra}""",
    )


def get(path: str = "/", method: str = "GET", host: str = "api:8080", headers=()) -> Request:
    return Request(method, path, host, list(headers))


def decide(table: L7Table, world: World, request: Request, peer: str = "frontend", port: int = 8080):
    rules = table.rule_set(world.ep("api"), INGRESS, world.ident(peer), port, TCP)
    assert rules is not None, "not redirected"
    return rules.decide(request)


# -- the seed's rule set ------------------------------------------------------------------------


SEED_RULES = """              - method: "GET"
                path: "/api/v1/orders"
              - method: "GET"
                path: "/healthz"
"""


def test_seed_rules_redirect_the_peer_port_entry_and_allow_get_only() -> None:
    world = World()
    out, table = world.compile(ingress_http(SEED_RULES))
    entries = world.entries(out, "api")
    assert entries[(world.ident("frontend"), 8080, TCP)] == (ACTION_ALLOW, HTTP_PROXY_PORT)
    assert entries[(HOST, 0, 0)] == (ACTION_ALLOW, 0)  # allow-localhost is not redirected
    assert table.rule_set(world.ep("api"), INGRESS, HOST, 8080, TCP) is None
    assert decide(table, world, get("/api/v1/orders")).allowed
    assert decide(table, world, get("/healthz")).allowed
    denied = decide(table, world, get("/api/v1/orders", "POST"))
    assert not denied.allowed
    assert [world.rule_text(c) for c in denied.denied_by] == [
        "CiliumNetworkPolicy payments/api-http spec.ingress[0]"
    ]
    # anchored: no prefix, suffix or query string match
    for path in ("/api/v1/orders/1", "/x/api/v1/orders", "/api/v1/orders?id=1"):
        assert not decide(table, world, get(path)).allowed, path
    # another identity on the same port is not allowed at L3/L4 at all: no redirect, no entry
    assert (world.ident("admin"), 8080, TCP) not in entries
    assert table.rule_set(world.ep("api"), INGRESS, world.ident("admin"), 8080, TCP) is None


@pytest.mark.parametrize(
    ("rule", "allowed", "denied"),
    [
        ('              - method: "GET|HEAD"\n', [get(method="HEAD")], [get(method="GETX")]),
        ('              - path: "/api/v[0-9]+/.*"\n', [get("/api/v2/orders")], [get("/api/v/orders")]),
        ('              - host: "api(:8080)?"\n', [get(host="api"), get(host="api:8080")], [get(host="db")]),
        (
            '              - headers: ["X-Token"]\n',
            [get(headers=[("x-token", "")])],
            [get(headers=[("X-Other", "1")])],
        ),
        (
            '              - headers: ["X-Team: blue"]\n',
            [get(headers=[("X-Team", "blue")])],
            [get(headers=[("X-Team", "red")]), get()],
        ),
        (
            "              - headerMatches: [{name: X-Env, value: prod}]\n",
            [get(headers=[("x-env", "prod")])],
            [get(headers=[("X-Env", "dev")]), get()],
        ),
        (
            '              - {method: GET, path: "/a"}\n              - {method: PUT, path: "/b"}\n',
            [get("/a"), get("/b", "PUT")],
            [get("/a", "PUT"), get("/b")],
        ),
    ],
    ids=["method", "path", "host", "header-presence", "header-value", "header-match", "or"],
)
def test_each_rule_kind_allows_and_denies(rule: str, allowed: list, denied: list) -> None:
    world = World()
    _, table = world.compile(ingress_http(rule))
    for request in allowed:
        assert decide(table, world, request).allowed, request
    for request in denied:
        assert not decide(table, world, request).allowed, request


def test_header_mismatch_actions_pass_and_edit_the_request() -> None:
    world = World()
    rules = """              - headerMatches:
                  - {name: X-Log, value: "1", mismatch: LOG}
                  - {name: X-Add, value: added, mismatch: ADD}
                  - {name: X-Del, value: keep, mismatch: DELETE}
                  - {name: X-Rep, value: fixed, mismatch: REPLACE}
"""
    _, table = world.compile(ingress_http(rules))
    decision = decide(table, world, get(headers=[("X-Del", "other"), ("X-Rep", "old")]))
    assert decision.allowed
    result = decision.result
    assert result.add == [("X-Add", "added"), ("X-Rep", "fixed")]
    assert result.remove == {"x-del", "x-rep"}
    assert result.missing == [("X-Log", "1"), ("X-Add", "added")]
    assert result.rejected == [("X-Del", "other"), ("X-Rep", "old")]
    clean = decide(table, world, get(headers=[("X-Log", "1"), ("X-Add", "added"), ("X-Del", "keep")]))
    assert clean.result.missing == [("X-Rep", "fixed")] and clean.result.remove == {"x-rep"}


def test_empty_rule_allows_everything_through_the_proxy() -> None:
    world = World()
    out, table = world.compile(ingress_http("              - {}\n"))
    assert world.entries(out, "api")[(world.ident("frontend"), 8080, TCP)][1] == HTTP_PROXY_PORT
    assert decide(table, world, get("/anything", "DELETE")).allowed


def test_l4_only_allow_for_the_same_peer_wildcards_its_l7_rules() -> None:
    """Cilium: an L4 rule and the same L4 rule with L7 rules: the L7 part has no effect (still proxied)."""
    world = World()
    l4 = cnp(
        "api-allow",
        """  endpointSelector: {matchLabels: {app: api}}
  ingress:
    - fromEndpoints: [{matchLabels: {app: frontend}}]
      toPorts: [{ports: [{port: "8080", protocol: TCP}]}]
""",
    )
    out, table = world.compile(ingress_http(SEED_RULES) + "---\n" + l4)
    assert world.entries(out, "api")[(world.ident("frontend"), 8080, TCP)] == (ACTION_ALLOW, HTTP_PROXY_PORT)
    decision = decide(table, world, get("/api/v1/orders", "POST"))
    assert decision.allowed
    assert [world.rule_text(c) for c in decision.allowed_by] == [
        "CiliumNetworkPolicy payments/api-allow spec.ingress[0]"
    ]


def test_l7_rules_are_per_peer() -> None:
    """frontend is restricted to GET; admin, allowed on the same port without L7 rules, is not restricted."""
    world = World()
    text = ingress_http(SEED_RULES) + (
        """    - fromEndpoints: [{matchLabels: {app: admin}}]
      toPorts: [{ports: [{port: "8080", protocol: TCP}]}]
"""
    )
    out, table = world.compile(text)
    entries = world.entries(out, "api")
    assert entries[(world.ident("frontend"), 8080, TCP)] == (ACTION_ALLOW, HTTP_PROXY_PORT)
    assert entries[(world.ident("admin"), 8080, TCP)] == (ACTION_ALLOW, 0)  # not redirected
    assert table.rule_set(world.ep("api"), INGRESS, world.ident("admin"), 8080, TCP) is None
    assert not decide(table, world, get("/api/v1/orders", "POST")).allowed


def test_rules_of_several_policies_are_ored() -> None:
    world = World()
    second = ingress_http('              - {method: POST, path: "/api/v1/orders"}\n').replace(
        "name: api-http", "name: api-post"
    )
    _, table = world.compile(ingress_http(SEED_RULES) + "---\n" + second)
    post = decide(table, world, get("/api/v1/orders", "POST"))
    assert post.allowed
    assert [world.rule_text(c) for c in post.allowed_by] == [
        "CiliumNetworkPolicy payments/api-post spec.ingress[0]"
    ]
    denied = decide(table, world, get("/other", "PUT"))
    assert sorted(world.rule_text(c) for c in denied.denied_by) == [
        "CiliumNetworkPolicy payments/api-http spec.ingress[0]",
        "CiliumNetworkPolicy payments/api-post spec.ingress[0]",
    ]


def test_any_peer_l7_port_redirects_an_identity_with_an_l3_only_allow() -> None:
    """The datapath looks up L3-only before L4-only: the compiler adds the peer's redirected L3+L4 entry."""
    world = World()
    text = cnp(
        "api-http",
        """  endpointSelector: {matchLabels: {app: api}}
  ingress:
    - toPorts:
        - ports: [{port: "8080", protocol: TCP}]
          rules: {http: [{method: GET}]}
    - fromEndpoints: [{matchLabels: {app: batch}}]
""",
    )
    out, table = world.compile(text)
    entries = world.entries(out, "api")
    assert entries[(0, 8080, TCP)] == (ACTION_ALLOW, HTTP_PROXY_PORT)
    assert entries[(world.ident("batch"), 0, 0)] == (ACTION_ALLOW, 0)
    assert entries[(world.ident("batch"), 8080, TCP)] == (ACTION_ALLOW, HTTP_PROXY_PORT)
    # batch is allowed everything at L3, so its L7 is wildcarded; frontend only has the GET rule
    assert decide(table, world, get(method="POST"), peer="batch").allowed
    assert not decide(table, world, get(method="POST"), peer="frontend").allowed
    assert decide(table, world, get(), peer="frontend").allowed


def test_deny_rule_wins_over_a_redirect_and_has_no_proxy_port() -> None:
    world = World()
    text = ingress_http(SEED_RULES) + (
        """  ingressDeny:
    - fromEndpoints: [{matchLabels: {app: frontend}}]
      toPorts: [{ports: [{port: "8080", protocol: TCP}]}]
"""
    )
    out, _ = world.compile(text)
    assert world.entries(out, "api")[(world.ident("frontend"), 8080, TCP)] == (ACTION_DENY, 0)


def test_egress_http_rules() -> None:
    world = World()
    text = cnp(
        "frontend-out",
        """  endpointSelector: {matchLabels: {app: frontend}}
  egress:
    - toEndpoints: [{matchLabels: {app: api}}]
      toPorts:
        - ports: [{port: "8080", protocol: TCP}]
          rules: {http: [{method: GET, path: /healthz}]}
""",
    )
    out, table = world.compile(text)
    entries = world.entries(out, "frontend", EGRESS)
    assert entries == {(world.ident("api"), 8080, TCP): (ACTION_ALLOW, HTTP_PROXY_PORT)}
    rules = table.rule_set(world.ep("frontend"), EGRESS, world.ident("api"), 8080, TCP)
    assert rules.decide(get("/healthz")).allowed
    assert not rules.decide(get("/admin")).allowed
    assert out.redirects() == {k: HTTP_PROXY_PORT for k, v in out.entries.items() if v.proxy_port}


@pytest.mark.parametrize("protocol", ["", "protocol: ANY"])
def test_http_rules_on_protocol_any_are_refused_like_cilium(protocol: str) -> None:
    """Cilium: "L7 rules can only apply to TCP (not ANY) except for DNS rules" (no protocol is ANY)."""
    world = World()
    text = cnp(
        "frontend-out",
        f"""  endpointSelector: {{matchLabels: {{app: frontend}}}}
  egress:
    - toEndpoints: [{{matchLabels: {{app: api}}}}]
      toPorts:
        - ports: [{{port: "8080", {protocol}}}]
          rules: {{http: [{{method: GET}}]}}
""",
    )
    with pytest.raises(PolicyError) as info:
        world.compile(text)
    assert "ports[0].protocol: L7 rules can only apply to TCP (not ANY)" in str(info.value)


def test_named_port_with_http_rules() -> None:
    world = World()
    api = world.endpoints["api"]
    world.endpoints["api"] = api._replace(named_ports=(("http", 8080, TCP),))
    out, table = world.compile(ingress_http("              - {method: GET}\n", port="http"))
    assert world.entries(out, "api")[(world.ident("frontend"), 8080, TCP)] == (ACTION_ALLOW, HTTP_PROXY_PORT)
    assert decide(table, world, get()).allowed


def test_empty_http_list_is_plain_l4() -> None:
    world = World()
    out, table = world.compile(ingress_http("", extra="").replace("http:\n", "http: []\n"))
    assert world.entries(out, "api")[(world.ident("frontend"), 8080, TCP)] == (ACTION_ALLOW, 0)
    assert not table


# -- rejected input -------------------------------------------------------------------------------


def _error(text: str) -> str:
    with pytest.raises(PolicyError) as info:
        parse_policies(text, "l7.yaml")
    return str(info.value)


PORTS = "spec.ingress[0].toPorts[0]"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "  kafka: [{role: produce, topic: t}]\n",
            f"{PORTS}.rules.kafka: Kafka rules are not supported yet",
        ),
        ("  l7proto: r2d2\n  l7: [{cmd: READ}]\n", f"{PORTS}.rules.l7proto: generic L7 rules (l7proto)"),
        ("  l7: [{cmd: READ}]\n", f"{PORTS}.rules.l7: generic L7 rules (l7) are not supported yet"),
        ("  grpc: []\n", f"{PORTS}.rules.grpc: unknown field"),
        (
            "  http: [{}]\n  dns: [{matchName: x.com}]\n",
            f"{PORTS}.rules: only one L7 rule type per port is allowed, got dns, http",
        ),
        ("  http: [{verb: GET}]\n", f"{PORTS}.rules.http[0].verb: unknown field"),
        ("  http: [{path: '/a('}]\n", f"{PORTS}.rules.http[0].path: '/a(' is not a valid regular expression"),
        ("  http: [{path: '/(?=a)'}]\n", f"{PORTS}.rules.http[0].path: '/(?=a)' uses look-around"),
        ("  http: [{method: [GET]}]\n", f"{PORTS}.rules.http[0].method: must be a string"),
        ("  http: [{headers: ['bad header:']}]\n", f'{PORTS}.rules.http[0].headers[0]: "bad header:" is not'),
        (
            "  http: [{headerMatches: [{name: X-Key, secret: {namespace: a, name: b}}]}]\n",
            f"{PORTS}.rules.http[0].headerMatches[0].secret: secret references are not supported",
        ),
        (
            "  http: [{headerMatches: [{name: X-Key, value: a, mismatch: DROP}]}]\n",
            f'{PORTS}.rules.http[0].headerMatches[0].mismatch: "DROP" is not a mismatch action',
        ),
        (
            "  http: [{headerMatches: [{name: X-Key, mismatch: ADD}]}]\n",
            f"{PORTS}.rules.http[0].headerMatches[0].value: is required with mismatch ADD",
        ),
        ("  http: {method: GET}\n", f"{PORTS}.rules.http: must be a list"),
    ],
)
def test_bad_l7_rules_are_rejected_with_field_path(body: str, expected: str) -> None:
    text = cnp(
        "bad",
        """  endpointSelector: {}
  ingress:
    - toPorts:
        - ports: [{port: "80", protocol: TCP}]
          rules:
"""
        + "".join("          " + line + "\n" for line in body.splitlines()),
    )
    message = _error(text)
    assert message.startswith("policy file l7.yaml, document 1 (payments/bad): "), message
    assert expected in message, message


@pytest.mark.parametrize(
    ("ports", "expected"),
    [
        (
            '[{port: "53", protocol: UDP}]',
            f'{PORTS}.ports[0].protocol: HTTP rules need protocol TCP, got "UDP"',
        ),
        ('[{port: "80", endPort: 90, protocol: TCP}]', f"{PORTS}.ports[0].endPort: L7 rules on port ranges"),
        ("[]", f"{PORTS}: L7 rules need a port"),
        ('[{port: "0"}]', f"{PORTS}.ports[0]: L7 rules need a port"),
    ],
)
def test_http_rules_need_a_single_tcp_port(ports: str, expected: str) -> None:
    text = cnp(
        "bad",
        f"""  endpointSelector: {{}}
  ingress:
    - toPorts:
        - ports: {ports}
          rules: {{http: [{{}}]}}
""",
    )
    assert expected in _error(text)
