"""Policy YAML validation: whole-file rejection with document, field path and reason."""

from __future__ import annotations

import pytest
from hubbletest import FIXTURES

from hubblepy.policy import PolicyError, load_policy_file, parse_policies

SEED = FIXTURES / "seed"

API_ALLOW = """\
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: api-allow
  namespace: payments
spec:
  endpointSelector:
    matchLabels:
      app: api
  ingress:
    - fromEndpoints:
        - matchLabels:
            app: frontend
      toPorts:
        - ports:
            - port: "{port}"
              protocol: TCP
"""


def _error(text: str, filename: str = "api-allow.yaml") -> str:
    with pytest.raises(PolicyError) as info:
        parse_policies(text, filename)
    return str(info.value)


def test_bad_port_names_document_and_field_path():
    assert _error(API_ALLOW.format(port="80800")) == (
        "policy file api-allow.yaml, document 1 (payments/api-allow): "
        'spec.ingress[0].toPorts[0].ports[0].port: "80800" is not a valid port'
    )


def test_bad_multi_document_file_is_rejected_whole():
    good = API_ALLOW.format(port="8080")
    bad = API_ALLOW.format(port="x y").replace("api-allow", "second")
    message = _error(good + "---\n" + bad, "two.yaml")
    assert message.startswith("policy file two.yaml, document 2 (payments/second): ")
    assert message.endswith('spec.ingress[0].toPorts[0].ports[0].port: "x y" is not a valid port')


@pytest.mark.parametrize(
    ("mutation", "expected"),
    [
        (
            ("protocol: TCP", "protocol: ICMPX"),
            'spec.ingress[0].toPorts[0].ports[0].protocol: "ICMPX" is not a valid protocol',
        ),
        (("fromEndpoints:", "fromEndpointz:"), "spec.ingress[0].fromEndpointz: unknown field"),
        (
            ("metadata:", "extra: 1\nmetadata:"),
            "document 1 (payments/api-allow): extra: unknown field",
        ),
        (
            ("app: frontend", "app: [x]"),
            "spec.ingress[0].fromEndpoints[0].matchLabels.app: label values must be strings",
        ),
        (("kind: CiliumNetworkPolicy", "kind: Pod"), 'kind: "Pod" is not a supported kind'),
        (
            ("fromEndpoints:", "fromRequires:"),
            "spec.ingress[0].fromRequires: fromRequires is not supported yet",
        ),
    ],
)
def test_field_errors(mutation, expected):
    text = API_ALLOW.format(port="8080").replace(*mutation)
    assert expected in _error(text)


def test_match_expression_validation():
    text = API_ALLOW.format(port="8080").replace(
        "matchLabels:\n            app: frontend",
        "matchExpressions:\n            - {key: app, operator: In}",
    )
    assert (
        "spec.ingress[0].fromEndpoints[0].matchExpressions[0].values: must be a non-empty list for operator In"
        in _error(text)
    )
    text2 = text.replace("operator: In", "operator: Maybe")
    assert 'matchExpressions[0].operator: "Maybe" is not a valid operator' in _error(text2)


def test_invalid_yaml_and_empty_file():
    assert _error("a: [", "x.yaml").startswith("policy file x.yaml: invalid YAML at line")
    assert _error("", "x.yaml") == "policy file x.yaml: no policy found"


def test_duplicate_name_in_one_file():
    good = API_ALLOW.format(port="8080")
    assert (
        "document 2 (payments/api-allow): metadata.name: payments/api-allow is already defined in document 1"
        in _error(good + "---\n" + good)
    )


def test_ccnp_must_not_have_namespace():
    text = API_ALLOW.format(port="80").replace("CiliumNetworkPolicy", "CiliumClusterwideNetworkPolicy")
    assert "metadata.namespace: must not be set" in _error(text)


def test_seed_policies_load_http_and_fqdn_rules_and_warn_for_dns():
    (l7,) = load_policy_file(SEED / "api-http-l7.yaml")
    assert l7.warnings == []
    (port,) = l7.specs[0].ingress[0].ports
    assert (port.port, port.protocol) == (8080, "TCP")
    assert [(r.method, r.path) for r in port.http] == [("GET", "/api/v1/orders"), ("GET", "/healthz")]
    (fqdn,) = load_policy_file(SEED / "api-egress-fqdn.yaml")
    assert not any("toFQDNs" in w for w in fqdn.warnings)
    assert [str(s) for s in fqdn.specs[0].egress[1].fqdns] == [
        "matchName: api.stripe.com",
        "matchPattern: *.stripe.com",
    ]
    for name in ("default-deny.yaml", "api-allow.yaml", "allow-dns-cluster-wide.yaml"):
        (policy,) = load_policy_file(SEED / name)
        assert policy.warnings == []
    (host,) = load_policy_file(SEED / "lock-down-nodes.yaml")
    assert any("spec.nodeSelector: host policies are not enforced" in w for w in host.warnings)
    assert host.specs[0].ingress[1].cidrs[0].cidr == "10.20.0.0/16"
