// hubble ui: the service map page. The server aggregates flows into edges and sends batched
// deltas over /ws; this script draws them with Cytoscape.js, shows the flow table of a clicked
// edge or box (/api/flows) and exports the map (SVG, PNG) and the visible flows (JSON lines).
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const COLORS = { allowed: "#2e9e44", dropped: "#d62728", audit: "#e69a00" };
  const MAIN_VERDICTS = new Set(["FORWARDED", "DROPPED", "AUDIT"]);
  const MAX_RENDERED_ROWS = 1000;
  const state = {
    namespace: null, counts: {}, selection: null, rows: [], open: new Set(), laidOut: false,
    edges: new Map(), layoutTimer: null, lastLayout: 0, tableTimer: null, lastTable: 0, ws: null, firstMapMs: null,
    messages: 0,
  };

  const cy = cytoscape({
    container: $("map"),
    minZoom: 0.05,
    maxZoom: 3,
    style: [
      { selector: "node", style: {
        shape: "round-rectangle", label: "data(label)", "text-valign": "center", "text-halign": "center",
        width: "data(w)", height: 30,
        "background-color": "#e6effa", "border-width": 1.5, "border-color": "#4f79a8",
        "font-size": 12, color: "#1d2329", "min-zoomed-font-size": 7 } },
      { selector: "node.outside", style: {
        "background-color": "#f2f3f5", "border-style": "dashed", "border-color": "#7d8791" } },
      { selector: "node.world", style: { "background-color": "#eaf6ff", "border-color": "#2f7fb8" } },
      { selector: "node.host, node.kube-dns", style: { "background-color": "#f4efff", "border-color": "#7a5fb0" } },
      { selector: "node:selected", style: { "border-width": 3, "border-color": "#1a5fb4" } },
      { selector: "edge", style: {
        "curve-style": "bezier", "target-arrow-shape": "triangle", width: "data(width)",
        "line-color": COLORS.allowed, "target-arrow-color": COLORS.allowed, label: "data(label)",
        "font-size": 10, "text-rotation": "autorotate", "text-background-color": "#ffffff",
        "text-background-opacity": 0.85, "text-background-padding": 2, "arrow-scale": 1.1,
        "min-zoomed-font-size": 8 } },
      { selector: "edge.dropped", style: { "line-color": COLORS.dropped, "target-arrow-color": COLORS.dropped } },
      { selector: "edge.audit", style: { "line-color": COLORS.audit, "target-arrow-color": COLORS.audit } },
      { selector: "edge:selected", style: { "overlay-opacity": 0.15, "overlay-color": "#1a5fb4" } },
    ],
  });

  // -- map --------------------------------------------------------------------------------------

  function isOutside(node) {
    return state.namespace !== "" && node.namespace !== state.namespace;
  }

  function addNode(node) {
    if (cy.getElementById(node.id).nonempty()) return false;
    const outside = isOutside(node);
    // a workload of another namespace is an outside box named namespace/workload
    const label = outside && node.kind === "workload" ? node.id : node.label;
    const w = Math.max(60, label.length * 7.2 + 22); // a data field, not a style function: much faster
    const data = { id: node.id, label, w, kind: node.kind, namespace: node.namespace };
    cy.add({ group: "nodes", data, classes: [node.kind, outside ? "outside" : "inside"].join(" ") });
    return true;
  }

  function shortCount(n) {
    if (n < 1000) return String(n);
    if (n < 10000) return (n / 1000).toFixed(1) + "k";
    if (n < 1e6) return Math.round(n / 1000) + "k";
    return (n / 1e6).toFixed(1) + "M";
  }

  function edgeLabel(edge) {
    const port = edge.port ? edge.port + "/" : "";
    return `${port}${edge.protocol || "L3"} · ${shortCount(edge.total)}`;
  }

  // Only what is drawn goes into Cytoscape, and only when it changes (counts are rounded in the
  // label), so a busy map is not redrawn for every batch; the exact counts live in state.edges.
  function upsertEdge(edge) {
    state.edges.set(edge.id, edge);
    const label = edgeLabel(edge);
    const width = Math.round(2 * Math.min(8, 1.5 + Math.log10(edge.total + 1) * 1.5)) / 2;
    const el = cy.getElementById(edge.id);
    if (el.empty()) {
      cy.add({ group: "edges", data: { id: edge.id, source: edge.source, target: edge.target, label, width,
        state: edge.state }, classes: edge.state });
    } else if (el.data("label") !== label || el.data("state") !== edge.state || el.data("width") !== width) {
      el.data({ label, width, state: edge.state });
      el.classes(edge.state);
    }
  }

  function scheduleLayout() {
    clearTimeout(state.layoutTimer);
    const wait = state.laidOut ? Math.max(200, 1500 - (performance.now() - state.lastLayout)) : 0;
    state.layoutTimer = setTimeout(runLayout, wait);
  }

  function runLayout() {
    state.lastLayout = performance.now();
    const count = cy.nodes().length;
    // Layers from callers (left) to callees (right) read like a service map.
    let options;
    if (count > 120) {
      options = { name: "concentric", concentric: (n) => n.degree(), levelWidth: () => 3, minNodeSpacing: 10,
        animate: false, padding: 20 };
    } else {
      const roots = cy.nodes().filter((n) => n.indegree(false) === 0);
      options = { name: "breadthfirst", directed: true, roots: roots.nonempty() ? roots : undefined,
        spacingFactor: 1.15, padding: 30, animate: false, nodeDimensionsIncludeLabels: true,
        transform: (n, p) => ({ x: p.y * 1.8, y: p.x / 1.8 }) };
    }
    // straight lines draw much faster than curves; curves keep parallel edges (ports) apart
    const curve = cy.edges().length > 150 ? "straight" : "bezier";
    if (cy.style().json().some((rule) => rule.selector === "edge" && rule.style["curve-style"] !== curve)) {
      cy.style().selector("edge").style("curve-style", curve).update();
    }
    cy.layout(options).run();
    performance.mark("layout");
    cy.fit(undefined, 30);
    if (cy.zoom() > 1.6) cy.zoom({ level: 1.6, renderedPosition: { x: cy.width() / 2, y: cy.height() / 2 } });
    state.laidOut = true;
  }

  function applyMap(msg) {
    if (msg.type === "snapshot") {
      performance.mark("snapshot");
      cy.elements().remove();
      state.edges.clear();
      state.laidOut = false;
    }
    let added = false;
    cy.batch(() => {
      for (const node of msg.nodes || []) added = addNode(node) || added;
      for (const edge of msg.edges || []) upsertEdge(edge);
    });
    performance.mark("edges-added");
    // a snapshot is laid out before the browser draws it once at the origin
    if (msg.type === "snapshot") runLayout();
    else if (added) scheduleLayout();
    if (state.firstMapMs === null && cy.edges().length && state.laidOut) {
      state.firstMapMs = -1;
      requestAnimationFrame(() => {
        state.firstMapMs = performance.now();
        performance.mark("first-map");
        document.body.dataset.mapReady = "1";
      });
    }
    if (state.selection && touchesSelection(msg.edges || [])) scheduleTable();
  }

  function touchesSelection(edges) {
    const sel = state.selection;
    return edges.some((e) => (sel.edge ? e.id === sel.edge : e.source === sel.node || e.target === sel.node));
  }

  // -- header -----------------------------------------------------------------------------------

  function pickNamespace(counts) {
    const wanted = new URLSearchParams(location.search).get("namespace");
    if (wanted !== null) return wanted;
    const names = Object.keys(counts).sort((a, b) => counts[b] - counts[a]);
    return names.find((n) => n !== "kube-system") || names[0] || "";
  }

  function updateNamespaces(counts) {
    state.counts = counts;
    if (state.namespace === null && (Object.keys(counts).length || state.messages > 10)) {
      subscribe(pickNamespace(counts));
    }
    const select = $("namespace");
    const names = Object.keys(counts).sort();
    if (state.namespace !== null && state.namespace !== "" && !names.includes(state.namespace)) {
      names.push(state.namespace);
    }
    const values = [...names, ""];
    if (select.options.length !== values.length || values.some((v, i) => select.options[i].value !== v)) {
      select.replaceChildren(...values.map((v) => new Option("", v)));
    }
    for (const option of select.options) {
      option.textContent = option.value === "" ? "(all namespaces)" : `${option.value} (${counts[option.value] || 0})`;
    }
    if (state.namespace !== null) select.value = state.namespace;
  }

  function updateStatus(status, stats) {
    const el = $("status");
    el.className = "status " + status.state;
    el.textContent = status.text || status.state;
    if (stats) {
      $("stats").textContent = `${stats.flows} flows · ${stats.rate}/s · ${stats.nodes} boxes · ${stats.edges} edges`;
    }
  }

  function subscribe(namespace) {
    state.namespace = namespace;
    const url = new URL(location.href);
    url.searchParams.set("namespace", namespace);
    history.replaceState(null, "", url);
    clearSelection();
    if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify({ namespace }));
  }

  $("namespace").addEventListener("change", (ev) => subscribe(ev.target.value));

  // -- live updates -----------------------------------------------------------------------------

  function connect() {
    const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws");
    state.ws = ws;
    ws.onopen = () => {
      performance.mark("ws-open");
      if (state.namespace !== null) ws.send(JSON.stringify({ namespace: state.namespace }));
    };
    ws.onmessage = (ev) => {
      const msg = JSON.parse(ev.data);
      state.messages += 1;
      if (msg.namespaces) updateNamespaces(msg.namespaces);
      if (msg.status) updateStatus(msg.status, msg.stats);
      if (msg.namespace !== null && msg.namespace === state.namespace) applyMap(msg);
    };
    ws.onclose = () => {
      updateStatus({ state: "error", text: "page disconnected from hubble ui; retrying" });
      setTimeout(connect, 1000);
    };
  }

  // -- flow table -------------------------------------------------------------------------------

  function clearSelection() {
    state.selection = null;
    state.rows = [];
    state.open.clear();
    $("selection").textContent = "Click an edge or a box to see its flows.";
    renderRows();
  }

  function select(selection, text) {
    state.selection = selection;
    state.open.clear();
    $("selection").textContent = text;
    loadRows();
  }

  function scheduleTable() {
    if (state.tableTimer) return;
    const wait = Math.max(0, 1000 - (performance.now() - state.lastTable));
    state.tableTimer = setTimeout(() => { state.tableTimer = null; loadRows(); }, wait);
  }

  async function loadRows() {
    const sel = state.selection;
    if (!sel) return;
    state.lastTable = performance.now();
    const query = sel.edge ? "edge=" + encodeURIComponent(sel.edge) : "node=" + encodeURIComponent(sel.node);
    const response = await fetch("/api/flows?limit=2000&" + query);
    if (!response.ok || state.selection !== sel) return;
    const body = await response.json();
    state.rows = body.rows;
    for (const row of state.rows) {
      row.text = [row.time, row.source, row.destination, row.port, row.l7, row.verdict, row.drop_reason,
        row.policy, JSON.stringify(row.json)].join(" ").toLowerCase();
    }
    renderRows();
  }

  function visibleRows() {
    const verdict = $("verdict").value;
    const words = $("search").value.toLowerCase().split(/\s+/).filter(Boolean);
    return state.rows.filter((row) => {
      if (verdict === "other" ? MAIN_VERDICTS.has(row.verdict) : verdict && row.verdict !== verdict) return false;
      return words.every((w) => row.text.includes(w));
    });
  }

  function cell(text, cls) {
    const td = document.createElement("td");
    td.textContent = text || "";
    if (cls) td.className = cls;
    return td;
  }

  function renderRows() {
    const body = document.querySelector("#flows tbody");
    const rows = visibleRows();
    const out = [];
    for (const row of rows.slice(0, MAX_RENDERED_ROWS)) {
      const tr = document.createElement("tr");
      tr.className = "flow" + (state.open.has(row.seq) ? " open" : "");
      tr.dataset.seq = row.seq;
      tr.append(cell(row.time), cell(row.source), cell(row.destination), cell(row.port), cell(row.l7),
        cell(row.verdict, "verdict " + row.verdict), cell(row.drop_reason, "drop-reason"),
        cell(row.policy, "policy"));
      tr.addEventListener("click", () => {
        if (state.open.has(row.seq)) state.open.delete(row.seq); else state.open.add(row.seq);
        renderRows();
      });
      out.push(tr);
      if (state.open.has(row.seq)) {
        const jr = document.createElement("tr");
        jr.className = "json";
        const td = document.createElement("td");
        td.colSpan = 8;
        const pre = document.createElement("pre");
        pre.textContent = JSON.stringify(row.json, null, 2);
        td.append(pre);
        jr.append(td);
        out.push(jr);
      }
    }
    body.replaceChildren(...out);
    const shown = rows.length > MAX_RENDERED_ROWS ? ` (first ${MAX_RENDERED_ROWS} shown)` : "";
    $("row-count").textContent = state.selection ? `${rows.length} of ${state.rows.length} flows${shown}` : "";
    document.body.dataset.tableRenders = String(Number(document.body.dataset.tableRenders || 0) + 1);
  }

  $("verdict").addEventListener("change", renderRows);
  $("search").addEventListener("input", renderRows);

  cy.on("tap", "edge", (ev) => {
    const e = ev.target;
    const c = (state.edges.get(e.id()) || {}).counts || {};
    select({ edge: e.id() }, `${e.source().data("label")} → ${e.target().data("label")} ${e.data("label")} flows`
      + ` (forwarded ${c.forwarded || 0}, dropped ${c.dropped || 0}, audit ${c.audit || 0})`);
  });
  cy.on("tap", "node", (ev) => {
    const n = ev.target;
    select({ node: n.id() }, `flows of ${n.id()}`);
  });
  cy.on("tap", (ev) => { if (ev.target === cy) clearSelection(); });

  // -- exports ----------------------------------------------------------------------------------

  function download(blob, name) {
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = name;
    document.body.append(a);
    a.click();
    setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
  }

  function esc(text) {
    return String(text).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
  }

  function mapSvg() {
    const bb = cy.elements().boundingBox({ includeLabels: true });
    const pad = 20;
    const x0 = bb.x1 - pad, y0 = bb.y1 - pad, w = bb.w + 2 * pad, h = bb.h + 2 * pad;
    const out = [`<svg xmlns="http://www.w3.org/2000/svg" viewBox="${x0} ${y0} ${w} ${h}" width="${w}" height="${h}"`
      + ` font-family="sans-serif">`, "<defs>"];
    for (const [name, color] of Object.entries(COLORS)) {
      out.push(`<marker id="arrow-${name}" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7"`
        + ` orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="${color}"/></marker>`);
    }
    out.push("</defs>", `<rect x="${x0}" y="${y0}" width="${w}" height="${h}" fill="#ffffff"/>`);
    cy.edges().forEach((e) => {
      const st = e.data("state") in COLORS ? e.data("state") : "allowed";
      const s = e.sourceEndpoint(), t = e.targetEndpoint(), m = e.midpoint();
      const cps = e.controlPoints();
      const d = cps && cps.length === 1
        ? `M${s.x},${s.y} Q${cps[0].x},${cps[0].y} ${t.x},${t.y}` : `M${s.x},${s.y} L${t.x},${t.y}`;
      out.push(`<g class="edge ${st}" data-id="${esc(e.id())}"><path d="${d}" fill="none" stroke="${COLORS[st]}"`
        + ` stroke-width="${e.data("width")}" marker-end="url(#arrow-${st})"/>`
        + `<text x="${m.x}" y="${m.y - 3}" font-size="10" text-anchor="middle" fill="#1d2329">`
        + `${esc(e.data("label"))}</text></g>`);
    });
    cy.nodes().forEach((n) => {
      const b = n.boundingBox({ includeLabels: false, includeOverlays: false });
      const outside = n.hasClass("outside");
      out.push(`<g class="node"><rect x="${b.x1}" y="${b.y1}" width="${b.w}" height="${b.h}" rx="6"`
        + ` fill="${outside ? "#f2f3f5" : "#e6effa"}" stroke="${outside ? "#7d8791" : "#4f79a8"}"`
        + `${outside ? ' stroke-dasharray="4,3"' : ""}/><text x="${b.x1 + b.w / 2}" y="${b.y1 + b.h / 2 + 4}"`
        + ` font-size="12" text-anchor="middle" fill="#1d2329">${esc(n.data("label"))}</text></g>`);
    });
    out.push("</svg>");
    return out.join("\n");
  }

  function flowsJsonLines() {
    return visibleRows().map((row) => JSON.stringify(row.json) + "\n").join("");
  }

  const stem = () => "service-map-" + (state.namespace || "all");
  $("export-svg").addEventListener("click", () => download(new Blob([mapSvg()], { type: "image/svg+xml" }), stem() + ".svg"));
  $("export-png").addEventListener("click", () => {
    download(cy.png({ output: "blob", bg: "#ffffff", full: true, scale: 2 }), stem() + ".png");
  });
  $("export-flows").addEventListener("click", () => {
    download(new Blob([flowsJsonLines()], { type: "application/x-ndjson" }), stem() + "-flows.jsonl");
  });

  window.hubbleUI = { cy, state, mapSvg, visibleRows, flowsJsonLines };
  connect();
})();
