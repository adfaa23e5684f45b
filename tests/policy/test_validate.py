"""Policy input is bounded and validated like Cilium's: each case Cilium (or its CRD schema) rejects
is rejected here with the file, document and field path; hostile YAML is refused cheaply; and
``hubble policy validate`` reports every problem offline."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hubblepy.policy import PolicyError, parse_policies
from hubblepy.policy.parse import check_policies, load_policy_file

ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT / "tests" / "fixtures" / "seed"


def cnp(spec: str, meta: str = "") -> str:
    return (
        "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata:\n  name: p\n  namespace: shop\n"
        + meta
        + "spec:\n  endpointSelector: {}\n"
        + textwrap.indent(textwrap.dedent(spec), "  ")
    )


def error_of(text: str) -> str:
    with pytest.raises(PolicyError) as info:
        parse_policies(text, "bad.yaml")
    message = str(info.value)
    assert "\n" not in message
    return message


DOC = "policy file bad.yaml, document 1 (shop/p): "
IN = "spec.ingress[0]"
EG = "spec.egress[0]"

# (case, policy text, expected message after the file/document prefix)
REJECTED = [
    (
        "http rules not a list",
        cnp("ingress:\n- toPorts: [{ports: [{port: '80', protocol: TCP}], rules: {http: 12345}}]\n"),
        f"{IN}.toPorts[0].rules.http: must be a list, got a number",
    ),
    (
        "http rule not an object",
        cnp("ingress:\n- toPorts: [{ports: [{port: '80', protocol: TCP}], rules: {http: [GET]}}]\n"),
        f"{IN}.toPorts[0].rules.http[0]: must be an object",
    ),
    (
        "L7 rules without ports",
        cnp("ingress:\n- toPorts: [{rules: {http: [{method: GET}]}}]\n"),
        # the L7 parser (branch l7) may say it first, at the toPorts element
        re.compile(rf"{re.escape(IN)}\.toPorts\[0\](\.ports)?: L7 rules( \(http\))? need a port"),
    ),
    (
        "L7 rules on port 0",
        cnp("ingress:\n- toPorts: [{ports: [{port: '0', protocol: TCP}], rules: {http: [{}]}}]\n"),
        re.compile(
            rf"{re.escape(IN)}\.toPorts\[0\]\.ports\[0\](\.port)?: L7 rules (need a port|cannot be used when a port is 0)"
        ),
    ),
    (
        "HTTP on UDP",
        cnp("ingress:\n- toPorts: [{ports: [{port: '80', protocol: UDP}], rules: {http: [{}]}}]\n"),
        re.compile(rf"{re.escape(IN)}\.toPorts\[0\]\.ports\[0\]\.protocol: .*TCP.*UDP"),
    ),
    (
        "HTTP on ANY",
        cnp("ingress:\n- toPorts: [{ports: [{port: '80'}], rules: {http: [{}]}}]\n"),
        f"{IN}.toPorts[0].ports[0].protocol: L7 rules can only apply to TCP (not ANY)",
    ),
    (
        "DNS rules on ingress",
        cnp(
            "ingress:\n- toPorts: [{ports: [{port: '53', protocol: UDP}], rules: {dns: [{matchName: a.com}]}}]\n"
        ),
        f"{IN}.toPorts[0].rules.dns: DNS rules are not allowed on ingress",
    ),
    (
        "DNS rules without a port",
        cnp("egress:\n- toPorts: [{rules: {dns: [{matchName: a.com}]}}]\n"),
        f"{EG}.toPorts[0].ports: L7 rules (dns) need a port",
    ),
    (
        "DNS rules on another port",
        cnp(
            "egress:\n- toPorts: [{ports: [{port: '5353', protocol: UDP}], rules: {dns: [{matchName: a.com}]}}]\n"
        ),
        f'{EG}.toPorts[0].ports[0].port: DNS rules are only allowed on port 53, got "5353"',
    ),
    (
        "DNS rules on a port range",
        cnp(
            "egress:\n- toPorts: [{ports: [{port: '53', endPort: 60}], rules: {dns: [{matchName: a.com}]}}]\n"
        ),
        f"{EG}.toPorts[0].ports[0].endPort: DNS rules do not support port ranges",
    ),
    (
        "HTTP and DNS in one rule",
        cnp(
            "egress:\n- toPorts: [{ports: [{port: '53', protocol: TCP}],"
            " rules: {http: [{}], dns: [{matchName: a.com}]}}]\n"
        ),
        f"{EG}.toPorts[0].rules: only one L7 rule type per port is allowed, got dns, http",
    ),
    (
        "l7 without l7proto",
        cnp("egress:\n- toPorts: [{ports: [{port: '80', protocol: TCP}], rules: {l7: [{a: b}]}}]\n"),
        re.compile(
            rf"{re.escape(EG)}\.toPorts\[0\]\.rules\.l7: (may only be used with l7proto|generic L7 rules)"
        ),
    ),
    (
        "bad DNS rule pattern",
        cnp("egress:\n- toPorts: [{ports: [{port: '53'}], rules: {dns: [{matchPattern: 'a b'}]}}]\n"),
        f'{EG}.toPorts[0].rules.dns[0].matchPattern: "a b" is not a valid DNS name pattern',
    ),
    (
        "toFQDNs pattern",
        cnp("egress:\n- toFQDNs: [{matchPattern: '***[['}]\n"),
        f'{EG}.toFQDNs[0].matchPattern: "***[[" is not a valid DNS name pattern',
    ),
    (
        "toFQDNs name",
        cnp("egress:\n- toFQDNs: [{matchName: '*.example.com'}]\n"),
        f'{EG}.toFQDNs[0].matchName: "*.example.com" is not a valid DNS name',
    ),
    (
        "toFQDNs name and pattern",
        cnp("egress:\n- toFQDNs: [{matchName: a.com, matchPattern: '*.a.com'}]\n"),
        f"{EG}.toFQDNs[0]: needs exactly one of matchName or matchPattern",
    ),
    (
        "toFQDNs with toEndpoints",
        cnp("egress:\n- toFQDNs: [{matchName: a.com}]\n  toEndpoints: [{}]\n"),
        f"{EG}: combining toEndpoints and toFQDNs in one rule is not supported",
    ),
    (
        "fromEndpoints with fromCIDR",
        cnp("ingress:\n- fromEndpoints: [{}]\n  fromCIDR: [10.0.0.0/8]\n"),
        f"{IN}: combining fromEndpoints and fromCIDR in one rule is not supported",
    ),
    (
        "HTTP method regex",
        cnp(
            "ingress:\n- toPorts: [{ports: [{port: '80', protocol: TCP}], rules: {http: [{method: 'GE['}]}}]\n"
        ),
        re.compile(
            rf"{re.escape(IN)}\.toPorts\[0\]\.rules\.http\[0\]\.method: .GE\[. is not a valid regular expression"
        ),
    ),
    (
        "HTTP path not a string",
        cnp("ingress:\n- toPorts: [{ports: [{port: '80', protocol: TCP}], rules: {http: [{path: 5}]}}]\n"),
        f"{IN}.toPorts[0].rules.http[0].path: must be a string (a regular expression), got a number",
    ),
    (
        "header match without a name",
        cnp(
            "ingress:\n- toPorts: [{ports: [{port: '80', protocol: TCP}],"
            " rules: {http: [{headerMatches: [{value: x}]}]}}]\n"
        ),
        f"{IN}.toPorts[0].rules.http[0].headerMatches[0].name: is required",
    ),
    (
        "lowercase mismatch action",
        cnp(
            "ingress:\n- toPorts: [{ports: [{port: '80', protocol: TCP}],"
            " rules: {http: [{headerMatches: [{name: X, mismatch: log}]}]}}]\n"
        ),
        re.compile(
            rf"{re.escape(IN)}\.toPorts\[0\]\.rules\.http\[0\]\.headerMatches\[0\]\.mismatch: \"log\" is not a (valid )?mismatch"
        ),
    ),
    (
        "host policy with L7 rules",
        cnp("ingress:\n- toPorts: [{ports: [{port: '80', protocol: TCP}], rules: {http: [{}]}}]\n").replace(
            "endpointSelector: {}", "nodeSelector: {}"
        ),
        f"{IN}.toPorts[0].rules: host policies (nodeSelector) do not support L7 rules",
    ),
    (
        "lowercase protocol",
        cnp("ingress:\n- toPorts: [{ports: [{port: '80', protocol: tcp}]}]\n"),
        f'{IN}.toPorts[0].ports[0].protocol: "tcp" is not a valid protocol (TCP, UDP, SCTP, ANY) '
        '(did you mean "TCP"?)',
    ),
    (
        "port missing",
        cnp("ingress:\n- toPorts: [{ports: [{protocol: TCP}]}]\n"),
        f"{IN}.toPorts[0].ports[0].port: is required",
    ),
    (
        "more than 40 ports",
        cnp(
            "ingress:\n- toPorts: [{ports: [" + ", ".join(f"{{port: '{p}'}}" for p in range(1, 42)) + "]}]\n"
        ),
        f"{IN}.toPorts[0].ports: 41 ports, at most 40 per toPorts element",
    ),
    (
        "label key with a space",
        cnp("ingress:\n- fromEndpoints: [{matchLabels: {'a b': x}}]\n"),
        f'{IN}.fromEndpoints[0].matchLabels.a b: "a b" is not a valid label key',
    ),
    (
        "label key with a bad prefix",
        cnp("ingress:\n- fromEndpoints: [{matchLabels: {'Bad_Prefix/app': x}}]\n"),
        f'{IN}.fromEndpoints[0].matchLabels.Bad_Prefix/app: "Bad_Prefix/app" is not a valid label key',
    ),
    (
        "expression value not a label value",
        cnp("ingress:\n- fromEndpoints: [{matchExpressions: [{key: app, operator: In, values: ['a b']}]}]\n"),
        f'{IN}.fromEndpoints[0].matchExpressions[0].values[0]: "a b" is not a valid label value',
    ),
    (
        "metadata label value not a string",
        cnp("", "  labels: {team: 5}\n"),
        "metadata.labels.team: label values must be strings, got a number 5",
    ),
    (
        "metadata label key with a space",
        cnp("", "  labels: {'a b': x}\n"),
        'metadata.labels.a b: "a b" is not a valid label key',
    ),
    (
        "unknown metadata field",
        cnp("", "  owner: me\n"),
        "metadata.owner: unknown field",
    ),
    (
        "annotation value not a string",
        cnp("", "  annotations: {note: [1]}\n"),
        "metadata.annotations.note: annotation values must be strings, got a list",
    ),
    (
        "name not a DNS subdomain",
        cnp("").replace("name: p", "name: Bad_Name"),
        'metadata.name: "Bad_Name" is not a valid name',
    ),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in REJECTED], ids=[c[0] for c in REJECTED])
def test_cilium_rejects_so_do_we(text: str, expected: str | re.Pattern) -> None:
    message = error_of(text)
    prefix = DOC.replace("(shop/p)", "(shop/Bad_Name)") if "Bad_Name" in text else DOC
    assert message.startswith(prefix), message
    pattern = expected if isinstance(expected, re.Pattern) else re.compile(re.escape(expected))
    assert pattern.match(message[len(prefix) :]), message


def test_duplicate_keys_are_an_error_with_the_line() -> None:
    text = cnp("ingress:\n- fromEndpoints: [{}]\n").replace(
        "  namespace: shop\n", "  namespace: shop\n  name: q\n"
    )
    assert (
        error_of(text)
        == "policy file bad.yaml: invalid YAML at line 6: duplicate key 'name' (first at line 4)"
    )


def test_network_policy_protocol_is_case_sensitive() -> None:
    text = (
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: n, namespace: shop}\n"
        "spec:\n  podSelector: {}\n  ingress: [{ports: [{port: 80, protocol: udp}]}]\n"
    )
    assert error_of(text).endswith(
        'spec.ingress[0].ports[0].protocol: "udp" is not a valid protocol '
        '(TCP, UDP, SCTP, ANY) (did you mean "UDP"?)'
    )


def test_what_cilium_accepts_still_loads() -> None:
    for path in sorted(SEED.glob("*.yaml")) + sorted(
        (ROOT / "hubblepy/lab/scenarios/payments").glob("*.yaml")
    ):
        assert load_policy_file(path)
    text = cnp(
        """\
        egress:
        - toEndpoints: [{matchLabels: {'k8s:io.kubernetes.pod.namespace': kube-system}}]
          toPorts: [{ports: [{port: '53', protocol: ANY}], rules: {dns: [{matchPattern: '*'}]}}]
        - toFQDNs: [{matchPattern: '**.example.com'}, {matchName: api.example.com.}]
        ingress:
        - fromEndpoints: [{matchLabels: {app.kubernetes.io/name: web}}]
          toPorts: [{ports: [{port: '80', protocol: TCP}, {port: '8080', protocol: TCP}],
                     rules: {http: [{method: GET, path: '/api/.*', headerMatches: [{name: X, mismatch: LOG}]}]}}]
        """,
        "  labels: {team: payments, example.com/tier: '1'}\n  annotations: {note: hi}\n",
    )
    assert parse_policies(text)


def test_every_bad_document_is_reported() -> None:
    good = cnp("ingress:\n- fromEndpoints: [{}]\n")
    bad1 = cnp("ingress:\n- toPorts: [{ports: [{port: '80', protocol: tcp}]}]\n").replace(
        "name: p", "name: b1"
    )
    bad2 = cnp("", "  owner: me\n").replace("name: p", "name: b2")
    policies, problems = check_policies("---\n".join([bad1, good, bad2]), "f.yaml")
    assert [str(p.ref) for p in policies] == ["shop/p"]
    assert len(problems) == 2
    assert problems[0].startswith("policy file f.yaml, document 1 (shop/b1): spec.ingress[0].toPorts[0]")
    assert problems[1].startswith("policy file f.yaml, document 3 (shop/b2): metadata.owner: unknown field")


# -- hostile input ---------------------------------------------------------------------------------

ALIAS_BOMB = """\
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: bomb
  labels:
    a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
    b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
    c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
    d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
    e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
    f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
    g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
    h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
    i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
spec: {endpointSelector: {}}
"""

# what a child process does with each hostile input: load it, print the error and its peak RSS
_PROBE = """
import json, sys, time
from hubblepy.policy import PolicyError
from hubblepy.policy.parse import load_policy_file
start = time.monotonic()
try:
    load_policy_file(sys.argv[1])
    error = None
except PolicyError as exc:
    error = str(exc)
# VmHWM: this process image's peak RSS (ru_maxrss would also count the forking test runner's)
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"error": error, "seconds": time.monotonic() - start,
                  "rss_mb": int(hwm.split()[1]) / 1024}))
"""


def _hostile_files() -> dict[str, tuple[bytes, str]]:
    import random

    rng = random.Random(16)
    return {
        "alias bomb": (ALIAS_BOMB.encode(), "invalid YAML at line 6: anchors (&a) are not allowed"),
        "deep flow nesting": (b"a: " + b"[" * 200_000 + b"]" * 200_000 + b"\n", "nesting deeper than 32"),
        "deep block nesting": (
            "".join(" " * i + f"k{i}:\n" for i in range(300)).encode(),
            "nesting deeper than 32 levels",
        ),
        "10 MB scalar": (b"a: " + b"x" * 10_000_000 + b"\n", "larger than the 1048576 bytes allowed"),
        "100 KB scalar": (
            cnp("", "  labels: {a: " + "x" * 100_000 + "}\n").encode(),
            "a scalar of 100000 characters (at most 16384)",
        ),
        "binary garbage": (rng.randbytes(65536), "invalid YAML: binary data (a NUL byte at offset"),
        "binary with NUL": (b"apiVersion: v1\x00\x01\x02", "binary data (a NUL byte at offset 14)"),
        "invalid UTF-8": (b"kind: \xff\xfe\n", "not UTF-8 text (byte 6)"),
        "control character": (b"kind: \x07\n", "invalid YAML: unacceptable character"),
    }


@pytest.mark.parametrize("name", list(_hostile_files()))
def test_hostile_input_is_refused_cheaply(name: str, tmp_path: Path) -> None:
    data, expected = _hostile_files()[name]
    path = tmp_path / "hostile.yaml"
    path.write_bytes(data)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=True,
    )
    result = json.loads(done.stdout)
    error = result["error"]
    assert error is not None and "\n" not in error
    assert error.startswith(f"policy file {path}: "), error
    assert expected in error, error
    assert result["rss_mb"] < 100, result


def test_the_alias_bomb_is_refused_as_text_too() -> None:
    # the lab node receives the text itself (hubble lab policy apply): the same loader refuses it
    message = error_of(ALIAS_BOMB)
    assert message == "policy file bad.yaml: invalid YAML at line 6: anchors (&a) are not allowed"
    assert "aliases (*a) are not allowed" in error_of("a: *a\n")
    assert error_of("a: " + "x" * 10_000_000) == (
        "policy file bad.yaml: invalid YAML: larger than the 1048576 bytes allowed"
    )


# -- hubble policy validate ------------------------------------------------------------------------


def _validate(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "hubblepy.cli", "policy", "validate", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_validate_cli(tmp_path: Path) -> None:
    seeds = [str(p) for p in sorted(SEED.glob("*.yaml"))]
    done = _validate(*seeds)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == f"{seeds[0]}: valid (allow-dns-cluster-wide)"

    bad = tmp_path / "bad.yaml"
    bad.write_text(REJECTED[0][1] + "---\n" + REJECTED[6][1].replace("name: p", "name: q"))
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(ALIAS_BOMB)
    done = _validate(seeds[0], str(bad), str(bomb))
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if not line.startswith("warning: ")]
    assert errors == [
        f"policy file {bad}, document 1 (shop/p): {REJECTED[0][2]}",
        f"policy file {bad}, document 2 (shop/q): {REJECTED[6][2]}",
        f"policy file {bomb}: invalid YAML at line 6: anchors (&a) are not allowed",
    ]

    done = _validate("-o", "json", seeds[0], str(bad))
    assert done.returncode == 1
    report = json.loads(done.stdout)
    assert report["valid"] is False
    assert [f["valid"] for f in report["files"]] == [True, False]
    assert report["files"][0]["policies"] == ["allow-dns-cluster-wide"]
    assert len(report["files"][1]["errors"]) == 2

    done = _validate(str(tmp_path / "missing.yaml"))
    assert done.returncode == 1
    assert (
        done.stderr.strip()
        == f"policy file {tmp_path / 'missing.yaml'}: cannot read: No such file or directory"
    )
