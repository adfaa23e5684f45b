"""`hubble ui --input-file` in headless Debian chromium: map, flow table, filters, row JSON, exports."""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from hubbletest import REPO_ROOT, run_hubble

sys.path.insert(0, str(Path(__file__).resolve().parent))
from uitools import (  # noqa: E402
    UiProcess,
    artifact,
    browser_page,
    click_edge,
    edge_state,
    table_rows,
    wait_edge_state,
    wait_rows,
)

SAMPLE = REPO_ROOT / "hubblepy" / "sample" / "payments-sample.jsonl"


@pytest.fixture(scope="module")
def ui():
    proc = UiProcess("--input-file", str(SAMPLE))
    yield proc
    assert proc.stop() == 0


def _download(page, button: str) -> Path:  # noqa: ANN001 - playwright Page
    with page.expect_download() as info:
        page.click(button)
    return Path(info.value.path())


def test_capture_map_edges_namespaces_and_outside_boxes(ui):
    with browser_page() as page:
        page.goto(ui.url)
        page.wait_for_selector("body[data-map-ready='1']")
        assert page.input_value("#namespace") == "payments"  # the namespace with the most flows
        options = page.eval_on_selector_all("#namespace option", "os => os.map((o) => o.textContent)")
        assert "payments (78)" in options and "kube-system (9)" in options
        wait_edge_state(page, "payments/probe", "payments/api", "dropped")
        assert edge_state(page, "payments/api", "payments/postgres") == "allowed"
        assert edge_state(page, "payments/frontend", "kube-system/kube-dns") == "allowed"
        # the capture's frontend -> api edge holds the L7 policy's denied POST
        assert edge_state(page, "payments/frontend", "payments/api") == "dropped"
        boxes = page.evaluate(
            "() => window.hubbleUI.cy.nodes().map((n) => [n.id(), n.hasClass('outside'), n.data('label')])"
        )
        assert ["kube-system/kube-dns", True, "kube-dns"] in boxes  # kube-dns: an outside box
        assert ["payments/frontend", False, "frontend"] in boxes
        counts = page.evaluate(
            "() => window.hubbleUI.state.edges.get('payments/probe|payments/api|8080|TCP').counts"
        )
        assert counts["dropped"] > 0 and counts["audit"] > 0
        page.screenshot(path=str(artifact("capture-payments-map.png")))
        # another namespace: payments' workloads become outside boxes named namespace/workload
        page.select_option("#namespace", "kube-system")
        page.wait_for_function(
            "() => window.hubbleUI.cy.getElementById('payments/frontend').data('label') === 'payments/frontend'"
        )
        assert page.evaluate(
            "() => window.hubbleUI.cy.getElementById('payments/frontend').hasClass('outside')"
        )
        assert page.evaluate(
            "() => window.hubbleUI.cy.getElementById('kube-system/kube-dns').hasClass('inside')"
        )


def test_capture_red_edge_table_filters_json_and_exports(ui, tmp_path):
    with browser_page() as page:
        page.goto(ui.url + "/?namespace=payments")
        page.wait_for_selector("body[data-map-ready='1']")
        wait_edge_state(page, "payments/probe", "payments/api", "dropped")
        click_edge(page, "payments/probe", "payments/api")
        rows = wait_rows(page, lambda rows: any(r["drop_reason"] == "Policy denied" for r in rows))
        assert {"DROPPED", "AUDIT"} <= {r["verdict"] for r in rows}
        assert any("payments/default-deny (CiliumNetworkPolicy)" in r["policy"] for r in rows)
        assert all(
            r["destination"].startswith("payments/api")
            for r in rows
            if not r["source"].startswith("payments/api")
        )
        page.screenshot(path=str(artifact("capture-red-edge-flows.png")))

        page.select_option("#verdict", "DROPPED")
        dropped = table_rows(page)
        assert dropped and {r["verdict"] for r in dropped} == {"DROPPED"}
        page.fill("#search", "ingress denied by")
        denied = table_rows(page)
        assert denied and all("default-deny" in r["policy"] for r in denied)
        assert len(denied) < len(dropped)  # the drop events themselves name no policy in the capture

        page.click("#flows tbody tr.flow")
        pre = page.text_content("#flows tbody tr.json pre")
        whole = json.loads(pre)
        assert whole["flow"]["verdict"] == "DROPPED" and whole["flow"]["ingress_denied_by"]

        jsonl = _download(page, "#export-flows")
        lines = jsonl.read_text().splitlines()
        assert len(lines) == len(denied)
        assert all(json.loads(line)["flow"]["ingress_denied_by"] for line in lines)
        again = run_hubble(["observe", "--input-file", str(jsonl), "-o", "json"])
        assert again.returncode == 0, again.stderr
        assert len(again.stdout.splitlines()) == len(lines)

        svg = _download(page, "#export-svg").read_text()
        root = ET.fromstring(svg)
        assert root.tag == "{http://www.w3.org/2000/svg}svg"
        assert 'class="edge dropped"' in svg and 'class="edge allowed"' in svg and ">frontend<" in svg
        png = _download(page, "#export-png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_capture_clicking_a_box_lists_its_flows(ui):
    with browser_page() as page:
        page.goto(ui.url + "/?namespace=payments")
        page.wait_for_selector("body[data-map-ready='1']")
        page.wait_for_timeout(300)
        point = page.evaluate(
            """() => {
                const cy = window.hubbleUI.cy;
                const p = cy.getElementById('payments/postgres').renderedPosition();
                const box = cy.container().getBoundingClientRect();
                return {x: box.left + p.x, y: box.top + p.y};
            }"""
        )
        page.mouse.click(point["x"], point["y"])
        rows = wait_rows(page, lambda rows: bool(rows))
        assert all("postgres" in r["source"] + r["destination"] for r in rows)
        assert "flows of payments/postgres" in page.text_content("#selection")


def test_an_edge_with_only_audited_flows_is_amber(tmp_path):
    lines = [
        line for line in SAMPLE.read_bytes().splitlines() if json.loads(line)["flow"]["verdict"] == "AUDIT"
    ]
    capture = tmp_path / "audit.json"
    capture.write_bytes(b"\n".join(lines) + b"\n")
    ui = UiProcess("--input-file", str(capture))
    try:
        with browser_page() as page:
            page.goto(ui.url + "/?namespace=payments")
            page.wait_for_selector("body[data-map-ready='1']")
            wait_edge_state(page, "payments/probe", "payments/api", "audit")
            color = page.evaluate(
                "() => window.hubbleUI.cy.getElementById('payments/probe|payments/api|8080|TCP').style('line-color')"
            )
            assert color == "rgb(230,154,0)"
            page.screenshot(path=str(artifact("capture-audit-edge.png")))
    finally:
        assert ui.stop() == 0
