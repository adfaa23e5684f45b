"""The world has names (real namespaces, root): kube-dns forwards to the world's resolver, which
answers in rotation; HTTPS servers of the world have certificates of the lab CA that pods trust."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from labtools import TEST_PREFIX, Lab, lab_netns, needs_root  # noqa: E402

pytestmark = pytest.mark.root

STRIPE = {"192.0.2.20", "192.0.2.21"}
PROCESSORS = {"203.0.113.10", "203.0.113.11", "203.0.113.12"}
SYSTEM_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


@pytest.fixture
def lab(tmp_path):
    needs_root()
    if lab_netns():
        pytest.skip(f"namespaces with the test prefix {TEST_PREFIX} exist already")
    lab = Lab(tmp_path / "lab")
    try:
        yield lab
    finally:
        down = lab.down()
        assert down.returncode == 0, down.stderr
        assert lab_netns() == []


def _dig(lab: Lab, pod: str, *args: str) -> list[str]:
    out = lab.exec(pod, "dig", "+short", "+time=3", "+tries=1", *args)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_names_resolve_through_kube_dns_in_rotation_and_https_trusts_the_lab_ca(lab):
    system_bundle = SYSTEM_BUNDLE.read_bytes() if SYSTEM_BUNDLE.exists() else b""
    up = lab.up("--no-datapath")
    assert up.returncode == 0, up.stderr
    assert "World: api.stripe.com 192.0.2.20,192.0.2.21 (https:443)" in up.stdout
    state = lab.state()
    world = state["world"]
    assert world["resolver"] == "192.0.2.10:53"
    assert {h["name"] for h in world["hosts"]} == {"api.stripe.com", "example.com", "*.cardprocessor.com"}
    # the pods' resolver is kube-dns, which forwards outside names to the world's resolver
    first = _dig(lab, "default/probe", "api.stripe.com")
    second = _dig(lab, "payments/frontend", "api.stripe.com")
    third = _dig(lab, "default/probe", "+tcp", "api.stripe.com")
    assert len(first) == len(second) == 1 and {*first, *second} == STRIPE  # rotation: the next address
    assert third == first
    answer = lab.exec("default/probe", "dig", "+noall", "+answer", "eu.cardprocessor.com").stdout.split()
    assert answer[:4] == ["eu.cardprocessor.com.", "5", "IN", "A"] and answer[4] in PROCESSORS
    seen = {answer[4]} | {a for _ in range(2) for a in _dig(lab, "default/probe", "eu.cardprocessor.com")}
    assert seen == PROCESSORS  # a CDN-like family: three queries, three addresses
    assert set(_dig(lab, "payments/api", "us.cardprocessor.com")) <= PROCESSORS
    status = lab.exec("default/probe", "dig", "+noall", "+comments", "nothing.example.org").stdout
    assert "status: NXDOMAIN" in status
    assert _dig(lab, "default/probe", "api.payments.svc.cluster.local") == [
        next(p["ip"] for p in state["pods"] if p["name"] == "api")
    ]
    # HTTPS from pods without -k: curl and Python both trust the lab CA
    for pod, url in (
        ("default/probe", "https://api.stripe.com/"),
        ("payments/frontend", "https://us.cardprocessor.com/v1/charges"),
        ("default/probe", "https://example.com/"),
    ):
        got = lab.curl(pod, url, "-S", "-m", "10")  # a loaded CI machine: more than curl's usual 3 s
        assert got.stdout == "200", (url, got.stderr, lab.diagnosis(world["netns"]))
    py = lab.exec(
        "payments/api",
        "python3",
        "-c",
        "import urllib.request; print(urllib.request.urlopen('https://api.stripe.com/', timeout=5).status)",
    )
    assert py.stdout.strip() == "200", py.stderr
    # a wrong name is refused (the certificate names one host or family)
    wrong = lab.exec(
        "default/probe",
        "curl",
        "-s",
        "-m",
        "3",
        "--resolve",
        "evil.test:443:192.0.2.20",
        "https://evil.test/",
    )
    assert wrong.returncode == 60  # curl: peer certificate cannot be authenticated
    # the machine's own trust store is untouched; the CA is in the lab directory only
    assert (SYSTEM_BUNDLE.read_bytes() if SYSTEM_BUNDLE.exists() else b"") == system_bundle
    ca = Path(state["ca"]).read_bytes()
    assert ca.startswith(b"-----BEGIN CERTIFICATE-----") and ca not in system_bundle
    assert lab.down().returncode == 0
    assert not list(Path("/etc/netns").glob(f"{TEST_PREFIX}*"))


def test_https_to_the_world_through_the_datapath(lab):
    try:
        from hubblepy.datapath import DatapathUnavailable, check_environment
    except ImportError as exc:
        pytest.skip(f"datapath package not importable: {exc}")
    try:
        check_environment()
    except DatapathUnavailable as exc:
        pytest.skip(str(exc))
    up = lab.up()
    assert up.returncode == 0, up.stderr
    assert lab.curl("default/probe", "https://api.stripe.com/").stdout == "200"
    # payments/api's egress to the world is default-deny: api-egress-fqdn lets it reach only the
    # answers for *.stripe.com (toFQDNs); example.com resolves (allow-dns) and is dropped
    assert lab.curl("payments/api", "https://api.stripe.com/").stdout == "200"
    assert lab.curl("payments/api", "https://example.com/").stdout == "000"
    denied = lab.flows("--from-pod", "payments/api", "--verdict", "DROPPED", "--port", "443")
    assert denied and denied[-1]["IP"]["destination"] == "198.51.100.80"
    flows = lab.flows("--from-pod", "default/probe", "--port", "443")
    to_stripe = [f for f in flows if f["IP"]["destination"] in STRIPE]
    assert to_stripe and all(f["verdict"] == "FORWARDED" for f in to_stripe)
    assert to_stripe[0]["destination"]["identity"] == 2  # world
    # kube-dns forwarded the name to the world's resolver, through the datapath like any pod traffic
    forwarded = lab.flows("--from-pod", "kube-system/kube-dns", "--to-ip", "192.0.2.10", "--port", "53")
    assert forwarded and all(f["verdict"] == "FORWARDED" for f in forwarded)
