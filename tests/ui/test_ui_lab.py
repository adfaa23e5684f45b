"""`hubble ui` on the payments lab (real eBPF datapath, agent and relay), in headless Debian chromium.

The page is open before the requests are made, so what it shows arrives live: frontend -> api turns
up green after the frontend's request, probe -> api red after the probe's (default deny), and a
click on the red edge lists the drop as ``Policy denied`` with the policies that decided it.
Screenshots of each step go to build/ui-artifacts/.
"""

from __future__ import annotations

import json
import sys
import textwrap
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from hubblepy.codec.timestamps import canonical_ns

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "lab"))
from labtools import running_lab  # noqa: E402
from uitools import (  # noqa: E402
    UiProcess,
    artifact,
    browser_page,
    chromium_path,
    click_edge,
    edge_state,
    wait_edge_state,
    wait_rows,
)

pytestmark = pytest.mark.root
API = "http://api.payments:8080/api/v1/orders"
TIMEOUT = "000"  # curl's %{http_code} when no answer came
NO_FRONTEND = textwrap.dedent("""\
    apiVersion: cilium.io/v2
    kind: CiliumNetworkPolicy
    metadata: {name: no-frontend, namespace: payments}
    spec:
      endpointSelector: {matchLabels: {app: api}}
      ingressDeny:
        - fromEndpoints:
            - matchLabels: {app: frontend}
    """)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    chromium_path()
    with running_lab(tmp_path_factory.mktemp("ui") / "state") as lab:
        yield lab


def test_payments_map_turns_red_for_the_probe_and_names_the_policies(lab):
    ui = UiProcess("--server", lab.relay, env=lab.env)
    try:
        with browser_page() as page:
            page.goto(ui.url + "/?namespace=payments")
            page.wait_for_selector("#status.connected")
            page.screenshot(path=str(artifact("lab-1-page-loaded.png")))

            assert lab.curl("payments/frontend", API).stdout == "200"
            wait_edge_state(page, "payments/frontend", "payments/api", "allowed")
            assert edge_state(page, "default/probe", "payments/api") is None
            page.screenshot(path=str(artifact("lab-2-frontend-to-api-green.png")))

            assert lab.curl("default/probe", API).stdout == TIMEOUT
            wait_edge_state(page, "default/probe", "payments/api", "dropped")
            assert edge_state(page, "payments/frontend", "payments/api") == "allowed"
            outside = page.evaluate(
                "() => { const n = window.hubbleUI.cy.getElementById('default/probe');"
                " return [n.hasClass('outside'), n.data('label')]; }"
            )
            assert outside == [True, "default/probe"]  # the probe lives in another namespace
            page.screenshot(path=str(artifact("lab-3-probe-to-api-red.png")))

            click_edge(page, "default/probe", "payments/api")
            rows = wait_rows(
                page,
                lambda rows: any(r["drop_reason"] == "Policy denied" and r["policy"] for r in rows),
            )
            denied = [r for r in rows if r["drop_reason"] == "Policy denied" and r["policy"]]
            assert all(r["verdict"] == "DROPPED" for r in denied)
            policy = denied[0]["policy"]
            assert "payments/default-deny (CiliumNetworkPolicy)" in policy
            # api's ingress from app pods is the seed's api-http-l7 (api-allow keeps only its egress half)
            assert "payments/api-http-l7 (CiliumNetworkPolicy)" in policy
            assert policy.startswith("ingress denied by ")
            assert all(r["source"] == "default/probe" for r in denied)
            assert "Policy denied" in page.text_content("#flows tbody")
            page.screenshot(path=str(artifact("lab-4-red-edge-flows.png")))
    finally:
        assert ui.stop() == 0


def test_a_policy_change_turns_the_green_edge_red_while_the_page_is_open(lab, tmp_path):
    policy = tmp_path / "no-frontend.yaml"
    policy.write_text(NO_FRONTEND)
    ui = UiProcess("--server", lab.relay, env=lab.env)
    try:
        with browser_page() as page:
            page.goto(ui.url + "/?namespace=payments")
            page.wait_for_selector("#status.connected")
            assert lab.curl("payments/frontend", API).stdout == "200"
            wait_edge_state(page, "payments/frontend", "payments/api", "allowed")
            applied = lab.run("policy", "apply", str(policy))
            assert applied.returncode == 0, applied.stderr
            try:
                answers: list[str] = []
                started = time.monotonic()
                request = threading.Thread(
                    target=lambda: answers.append(lab.curl("payments/frontend", API).stdout)
                )
                request.start()
                wait_edge_state(page, "payments/frontend", "payments/api", "dropped")
                seen_wall, seen = time.time(), time.monotonic() - started
                edge = urllib.parse.quote("payments/frontend|payments/api|8080|TCP")
                with urllib.request.urlopen(f"{ui.url}/api/flows?edge={edge}", timeout=10) as r:
                    rows = json.loads(r.read())["rows"]
                first_drop = min(canonical_ns(r["time"]) for r in rows if r["verdict"] == "DROPPED")
                # figures for the report, not assertions: the dropped packet's event -> the page shows red,
                # and the request started (a `hubble lab exec` process) -> red
                artifact("lab-policy-change-seconds.txt").write_text(
                    f"event to red: {seen_wall - first_drop / 1e9:.2f}\nrequest start to red: {seen:.2f}\n"
                )
                request.join()
                assert answers == [TIMEOUT]
                page.screenshot(path=str(artifact("lab-5-policy-change-red.png")))
                click_edge(page, "payments/frontend", "payments/api")
                rows = wait_rows(page, lambda rows: any("no-frontend" in r["policy"] for r in rows))
                denied = [r for r in rows if "no-frontend" in r["policy"]]
                assert denied[0]["policy"] == "ingress denied by payments/no-frontend (CiliumNetworkPolicy)"
                assert denied[0]["verdict"] == "DROPPED"
                assert (
                    denied[0]["drop_reason"] == "Policy denied by denylist"
                )  # a deny rule, not default deny
            finally:
                removed = lab.run("policy", "delete", str(policy))
                assert removed.returncode == 0, removed.stderr
    finally:
        assert ui.stop() == 0
