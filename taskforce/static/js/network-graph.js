// The case's network graph (Cytoscape.js, served from static/vendor/, no CDN).
//
// The first draw is the case network the page embeds (#graph-data, already
// redacted by the server: survivors by pseudonym unless the reader may see
// more). Everything else asks the graph query API (/api/v1/graph/...), which
// applies need-to-know and redaction again: expand a node on click, shortest
// path between the two picked nodes, key players, communities. Filters hide
// what is drawn and narrow what expand fetches. The timeline chart (Chart.js)
// is drawn from the same links. No inline script or style (CSP).
(function () {
  "use strict";

  const KIND_STYLE = {
    person: { color: "#0072B2", shape: "ellipse" },
    location: { color: "#E69F00", shape: "round-rectangle" },
    phone: { color: "#009E73", shape: "diamond" },
    email: { color: "#CC79A7", shape: "tag" },
    bank_account: { color: "#D55E00", shape: "rectangle" },
    crypto_wallet: { color: "#8C6D31", shape: "hexagon" },
    online_account: { color: "#56B4E9", shape: "round-triangle" },
    ad: { color: "#B8860B", shape: "star" },
    vehicle: { color: "#6A3D9A", shape: "barrel" },
    organization: { color: "#4D4D4D", shape: "octagon" },
  };
  const COMMUNITY_COLORS = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02",
    "#a6761d", "#1f78b4", "#b2df8a", "#fb9a99", "#cab2d6", "#ff7f00"];
  // Link types whose direction means something (who paid, who called).
  const DIRECTED = new Set(["CALLED", "TEXTED", "PAID", "OWNS", "USES", "RECRUITED",
    "CONTROLS", "ADVERTISED", "LIVES_AT", "STAYED_AT", "WORKS_AT"]);

  const ANSWER_WITHIN_S = 20;

  const dataEl = document.getElementById("graph-data");
  const config = dataEl ? JSON.parse(dataEl.textContent) : null;

  drawTimelineChart(config);

  const container = document.getElementById("network-canvas");
  if (!config || !container) return;
  if (typeof window.cytoscape !== "function") {
    const missing = document.getElementById("graph-missing");
    if (missing) missing.hidden = false;
    container.hidden = true;
    return;
  }
  if (window.cytoscapeFcose) window.cytoscape.use(window.cytoscapeFcose);
  const LAYOUT = window.cytoscapeFcose ? "fcose" : "cose";

  const statusEl = document.getElementById("graph-status");
  const filtersForm = document.getElementById("graph-filters");
  const pathButton = document.getElementById("graph-path");
  const sharedButton = document.getElementById("graph-shared");
  const flowButton = document.getElementById("graph-flow");
  const selectedEl = document.getElementById("graph-selected");
  const keyList = document.getElementById("graph-key-list");
  const nodeList = document.getElementById("graph-node-list");
  const nodeCount = document.getElementById("graph-count");
  const legendEl = document.getElementById("graph-legend");
  const expandOnClick = document.getElementById("graph-expand-on-click");

  let picked = []; // ids (numbers) of the nodes picked for a path, at most two
  const expanded = new Set();
  let colourBy = "kind";
  let communityOf = {};

  function nid(id) { return "n" + id; }
  function eid(id) { return "e" + id; }

  function say(text, bad) {
    statusEl.textContent = text;
    statusEl.classList.toggle("error", Boolean(bad));
  }

  function count(n, one, many) {
    return `${n} ${n === 1 ? one : many}`;
  }

  function nodeLabel(n) {
    return n.label + (n.minor ? " (minor)" : "");
  }

  function nodeElement(n) {
    return { group: "nodes", data: { id: nid(n.id), entity: n.id, kind: n.kind,
      label: nodeLabel(n), name: n.label, survivor: Boolean(n.survivor), minor: Boolean(n.minor),
      redacted: Boolean(n.redacted), role: n.role || null, cases: n.cases || [] } };
  }

  function edgeElement(e) {
    return { group: "edges", data: { id: eid(e.id), link: e.id, type: e.type,
      source: nid(e.source), target: nid(e.target), first_seen: e.first_seen || null,
      last_seen: e.last_seen || null, confidence: e.confidence == null ? 1 : e.confidence,
      count: e.count || 1, amount: e.amount == null ? null : e.amount,
      directed: DIRECTED.has(e.type) } };
  }

  const style = [
    { selector: "node", style: {
      "label": "data(label)", "font-size": 11, "text-valign": "bottom", "text-margin-y": 4,
      "text-wrap": "ellipsis", "text-max-width": 140, "color": "#1d2430",
      "text-background-color": "#ffffff", "text-background-opacity": 0.8,
      "text-background-padding": 1, "width": 26, "height": 26,
      "border-width": 1, "border-color": "#ffffff",
      // zoomed out over a big network, names would be an unreadable smear
      "min-zoomed-font-size": 7 } },
    { selector: "node[?survivor]", style: { "border-width": 3, "border-style": "dashed",
      "border-color": "#a4262c" } },
    { selector: "node.expanded", style: { "border-width": 3, "border-color": "#1d2430" } },
    { selector: "node.picked", style: { "overlay-color": "#1f4e8c", "overlay-opacity": 0.25,
      "overlay-padding": 6, "border-width": 4, "border-color": "#1f4e8c",
      "border-style": "solid" } },
    { selector: "edge", style: { "width": "mapData(count, 1, 50, 1.5, 7)",
      "line-color": "#9aa5b5", "curve-style": "bezier", "target-arrow-color": "#9aa5b5",
      "opacity": "mapData(confidence, 0, 1, 0.35, 1)", "font-size": 9,
      "text-rotation": "autorotate", "color": "#5b6576" } },
    { selector: "edge[?directed]", style: { "target-arrow-shape": "triangle",
      "arrow-scale": 0.8 } },
    { selector: "edge:selected, edge.on-path, edge.shown", style: { "label": "data(type)" } },
    { selector: ".filtered", style: { "display": "none" } },
    { selector: ".faded", style: { "opacity": 0.15, "text-opacity": 0.2 } },
    { selector: "node.on-path", style: { "border-width": 4, "border-color": "#ffb000",
      "border-style": "solid" } },
    { selector: "edge.on-path", style: { "line-color": "#ffb000", "target-arrow-color": "#ffb000",
      "width": 5, "opacity": 1, "z-index": 10 } },
    { selector: "edge.shown", style: { "line-color": "#1f4e8c", "target-arrow-color": "#1f4e8c",
      "width": 5, "opacity": 1 } },
    { selector: "node.key-player", style: { "width": "data(size)", "height": "data(size)",
      "font-weight": "bold", "z-index": 5 } },
  ];
  for (const [kind, s] of Object.entries(KIND_STYLE)) {
    style.push({ selector: `node[kind = "${kind}"]`, style: { "background-color": s.color,
      "shape": s.shape } });
  }
  style.push({ selector: "node[community_color]", style: {
    "background-color": "data(community_color)" } });

  const cy = window.cytoscape({
    container,
    elements: [...config.nodes.map(nodeElement), ...config.edges.map(edgeElement)],
    style,
    wheelSensitivity: 0.3,
    minZoom: 0.05,
    maxZoom: 4,
    boxSelectionEnabled: false,
    autounselectify: true,
    // big networks: draw links only when the view rests
    hideEdgesOnViewport: config.edges.length > 1500,
  });

  // Handed to the end-to-end tests (and the browser console): the graph, and
  // a promise that settles once the first layout is done.
  let firstLayoutDone;
  const api = { cy, ready: new Promise((resolve) => { firstLayoutDone = resolve; }),
    picked: () => picked.slice(), busy: 0 };
  window.networkGraph = api;

  function runLayout(opts) {
    const n = cy.nodes().length;
    const layout = cy.layout(Object.assign({
      name: LAYOUT, animate: false, fit: true, padding: 30, randomize: true,
      quality: n > 300 ? "draft" : "default", nodeRepulsion: 6000, idealEdgeLength: 80,
      numIter: n > 300 ? 1000 : 2500,
    }, opts || {}));
    const done = new Promise((resolve) => layout.one("layoutstop", resolve));
    layout.run();
    return done;
  }

  // --------------------------------------------------------------- legend, list
  function buildLegend() {
    legendEl.replaceChildren();
    if (colourBy === "kind") {
      const present = new Set(cy.nodes().map((n) => n.data("kind")));
      for (const [kind, s] of Object.entries(KIND_STYLE)) {
        if (!present.has(kind)) continue;
        legendEl.append(legendItem(s.color, config.kinds[kind] || kind));
      }
      legendEl.append(legendItem("#ffffff", "survivor (dashed red ring)", "#a4262c"));
    } else {
      const sizes = {};
      for (const c of Object.values(communityOf)) sizes[c] = (sizes[c] || 0) + 1;
      Object.keys(sizes).sort((a, b) => a - b).forEach((c) => {
        legendEl.append(legendItem(COMMUNITY_COLORS[c % COMMUNITY_COLORS.length],
          `community ${Number(c) + 1} (${sizes[c]})`));
      });
    }
  }

  function legendItem(color, text, ring) {
    const li = document.createElement("li");
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.backgroundColor = color; // CSSOM, allowed by the CSP
    if (ring) swatch.style.borderColor = ring;
    li.append(swatch, document.createTextNode(" " + text));
    return li;
  }

  function refreshList() {
    const shown = cy.nodes().not(".filtered").sort((a, b) =>
      a.data("name").localeCompare(b.data("name")));
    nodeCount.textContent = String(shown.length);
    nodeList.replaceChildren(...shown.map((n) => {
      const li = document.createElement("li");
      const b = document.createElement("button");
      b.type = "button";
      b.className = "link-button";
      b.dataset.entityId = n.data("entity");
      b.textContent = n.data("label");
      b.setAttribute("aria-pressed", picked.includes(n.data("entity")) ? "true" : "false");
      const kind = document.createElement("span");
      kind.className = "muted";
      kind.textContent = " " + (config.kinds[n.data("kind")] || n.data("kind")) +
        (n.data("survivor") ? ", survivor" : "") + (n.hasClass("expanded") ? ", expanded" : "");
      li.append(b, kind);
      return li;
    }));
  }

  // A keyboard way to do what a click on the canvas does.
  nodeList.addEventListener("click", (event) => {
    const b = event.target.closest("button[data-entity-id]");
    if (b) activate(cy.getElementById(nid(Number(b.dataset.entityId))));
  });

  // --------------------------------------------------------------- filters
  function filters() {
    const f = filtersForm.elements;
    const checked = (name) => [...filtersForm.querySelectorAll(`input[name=${name}]`)]
      .filter((i) => i.checked).map((i) => i.value);
    const all = (name) => filtersForm.querySelectorAll(`input[name=${name}]`).length;
    const kinds = checked("kinds");
    const types = checked("link_types");
    const min = parseFloat(f.min_confidence.value);
    return {
      kinds: kinds.length === all("kinds") ? null : kinds,
      link_types: types.length === all("link_types") ? null : types,
      since: f.since.value || null,
      until: f.until.value || null,
      min_confidence: Number.isFinite(min) && min > 0 ? Math.min(min, 1) : null,
      this_case: f.this_case.checked,
    };
  }

  function edgePasses(e, flt) {
    const d = e.data();
    if (flt.link_types && !flt.link_types.includes(d.type)) return false;
    if (flt.min_confidence != null && d.confidence < flt.min_confidence) return false;
    // a link is in the window when it was active in it; undated links are left
    // out once a bound is given (as the query API does)
    if (flt.since && !(d.last_seen && d.last_seen.slice(0, 10) >= flt.since)) return false;
    if (flt.until && !(d.first_seen && d.first_seen.slice(0, 10) <= flt.until)) return false;
    return true;
  }

  function applyFilters() {
    const flt = filters();
    if (flt.since && flt.until && flt.until < flt.since) {
      say("The date window ends before it starts.", true);
      return;
    }
    cy.batch(() => {
      cy.nodes().forEach((n) => {
        n.toggleClass("filtered", Boolean(flt.kinds) && !flt.kinds.includes(n.data("kind")));
      });
      cy.edges().forEach((e) => {
        const hidden = !edgePasses(e, flt) || e.source().hasClass("filtered") ||
          e.target().hasClass("filtered");
        e.toggleClass("filtered", hidden);
      });
    });
    const hiddenNodes = cy.nodes(".filtered").length;
    const hiddenEdges = cy.edges(".filtered").length;
    say(hiddenNodes || hiddenEdges
      ? `Filters hide ${count(hiddenNodes, "entity", "entities")} and ` +
        `${count(hiddenEdges, "link", "links")}.`
      : "Showing everything loaded.");
    refreshList();
  }

  filtersForm.addEventListener("change", applyFilters);
  filtersForm.addEventListener("input", (ev) => {
    if (ev.target.name === "min_confidence") {
      document.getElementById("graph-min-confidence-value").textContent =
        Number(ev.target.value).toFixed(2);
    }
  });
  filtersForm.addEventListener("reset", () => setTimeout(() => {
    document.getElementById("graph-min-confidence-value").textContent = "0.00";
    applyFilters();
  }, 0));
  filtersForm.addEventListener("submit", (ev) => { ev.preventDefault(); applyFilters(); });

  // --------------------------------------------------------------- API
  async function ask(path, params) {
    const qs = new URLSearchParams();
    for (const [k, v] of Object.entries(params || {})) {
      if (v == null || v === false) continue;
      if (Array.isArray(v)) v.forEach((x) => qs.append(k, x));
      else qs.append(k, String(v));
    }
    api.busy += 1;
    // Do not leave the reader waiting while the server retries a graph engine that is down.
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), ANSWER_WITHIN_S * 1000);
    try {
      let resp;
      try {
        resp = await fetch(`${config.api}${path}?${qs}`, { signal: abort.signal,
          headers: { Accept: "application/json" }, credentials: "same-origin" });
      } catch (err) {
        throw new Error(abort.signal.aborted
          ? `the graph engine did not answer within ${ANSWER_WITHIN_S} seconds; try again shortly.`
          : "the server could not be reached.");
      }
      let body = null;
      try { body = await resp.json(); } catch (e) { body = null; }
      if (!resp.ok) {
        const msg = body && body.error && body.error.message ? body.error.message
          : `The server answered ${resp.status}.`;
        throw new Error(msg);
      }
      return body;
    } finally {
      clearTimeout(timer);
      api.busy -= 1;
    }
  }

  // Adds nodes and edges not drawn yet; returns the new elements. New nodes are
  // placed around `near` so the layout that follows moves little.
  function merge(result, near) {
    const fresh = [];
    const centre = near ? near.position() : { x: 0, y: 0 };
    const newNodes = (result.nodes || []).filter((n) => cy.getElementById(nid(n.id)).empty());
    newNodes.forEach((n, i) => {
      const el = nodeElement(n);
      const angle = (2 * Math.PI * i) / Math.max(newNodes.length, 1);
      el.position = { x: centre.x + 90 * Math.cos(angle), y: centre.y + 90 * Math.sin(angle) };
      fresh.push(el);
    });
    for (const e of result.edges || []) {
      if (cy.getElementById(eid(e.id)).empty()) fresh.push(edgeElement(e));
    }
    const added = cy.add(fresh.filter((el) => el.group === "nodes"));
    const addedEdges = cy.add(fresh.filter((el) => el.group === "edges" &&
      !cy.getElementById(el.data.source).empty() && !cy.getElementById(el.data.target).empty()));
    return added.union(addedEdges);
  }

  function caseScope(flt) {
    return flt.this_case ? config.case_id : null;
  }

  async function expand(node) {
    const flt = filters();
    const name = node.data("label");
    say(`Expanding ${name}…`);
    try {
      const result = await ask("/expand", {
        entity_id: node.data("entity"), hops: 1, kinds: flt.kinds, link_types: flt.link_types,
        since: flt.since, until: flt.until ? `${flt.until}T23:59:59` : null,
        min_confidence: flt.min_confidence, limit: 200, case_id: caseScope(flt) });
      const added = merge(result, node);
      node.addClass("expanded");
      expanded.add(node.data("entity"));
      const nodes = added.nodes().length;
      const edges = added.edges().length;
      if (nodes) await runLayout({ randomize: false, fit: false });
      applyFilters();
      buildLegend();
      say(nodes || edges
        ? `Expanded ${name}: ${count(nodes, "new entity", "new entities")}, ` +
          `${count(edges, "new link", "new links")}` +
          (result.truncated ? " (more exist: narrow the filters to see them)." : ".")
        : `Expanded ${name}: nothing more to show with these filters.`);
    } catch (err) {
      say(`Could not expand ${name}: ${err.message}`, true);
    }
  }

  // --------------------------------------------------------------- picking
  function showPicked() {
    cy.nodes(".picked").removeClass("picked");
    picked.forEach((id) => cy.getElementById(nid(id)).addClass("picked"));
    selectedEl.replaceChildren(...picked.map((id, i) => {
      const n = cy.getElementById(nid(id));
      const div = document.createElement("div");
      div.className = "picked-entity";
      const b = document.createElement("b");
      b.textContent = `${i === 0 ? "From" : "To"}: ${n.data("label")}`;
      const p = document.createElement("span");
      p.className = "muted";
      const bits = [config.kinds[n.data("kind")] || n.data("kind")];
      if (n.data("role")) bits.push(n.data("role"));
      if (n.data("survivor")) bits.push(n.data("redacted") ? "survivor, identity withheld"
        : "survivor");
      bits.push(count(n.connectedEdges().not(".filtered").length, "link", "links") + " shown");
      p.textContent = " " + bits.join(" · ");
      div.append(b, p);
      return div;
    }));
    if (!picked.length) selectedEl.textContent = "Click an entity to pick it (two for a path).";
    pathButton.disabled = picked.length !== 2;
    sharedButton.disabled = picked.length !== 2;
    flowButton.disabled = picked.length === 0;
    refreshList();
  }

  function activate(node) {
    if (!node || node.empty()) return;
    const id = node.data("entity");
    if (picked.includes(id)) {
      picked = picked.filter((x) => x !== id);
    } else {
      picked.push(id);
      if (picked.length > 2) picked = picked.slice(-2);
    }
    showPicked();
    if (expandOnClick.checked && !expanded.has(id)) expand(node);
  }

  cy.on("tap", "node", (ev) => activate(ev.target));
  cy.on("tap", "edge", (ev) => {
    const d = ev.target.data();
    const bits = [`${ev.target.source().data("label")} ${d.type} ${ev.target.target().data("label")}`];
    if (d.first_seen) bits.push(`seen ${d.first_seen.slice(0, 10)}` +
      (d.last_seen && d.last_seen !== d.first_seen ? ` to ${d.last_seen.slice(0, 10)}` : ""));
    if (d.count > 1) bits.push(`${d.count} times`);
    if (d.amount != null) bits.push(`$${Number(d.amount).toFixed(2)}`);
    bits.push(`confidence ${Number(d.confidence).toFixed(2)}`);
    say(bits.join(" · "));
  });

  // --------------------------------------------------------------- highlights
  function clearHighlights() {
    cy.elements().removeClass("faded on-path shown key-player");
    cy.nodes().removeData("size");
    cy.nodes().removeData("community_color");
    colourBy = "kind";
    communityOf = {};
    keyList.replaceChildren();
    buildLegend();
  }

  pathButton.addEventListener("click", async () => {
    if (picked.length !== 2) return;
    const [source, target] = picked;
    const flt = filters();
    const a = cy.getElementById(nid(source)).data("label");
    const b = cy.getElementById(nid(target)).data("label");
    say(`Looking for a path from ${a} to ${b}…`);
    try {
      const result = await ask("/shortest-path", { source, target,
        link_types: flt.link_types, case_id: caseScope(flt) });
      cy.elements().removeClass("on-path faded shown");
      if (!result.path) {
        say(`No path from ${a} to ${b} within six links among what you may see.`);
        return;
      }
      const added = merge(result.path, cy.getElementById(nid(source)));
      if (added.nodes().length) await runLayout({ randomize: false, fit: false });
      const onPath = cy.collection();
      result.path.nodes.forEach((n) => { onPath.merge(cy.getElementById(nid(n.id))); });
      result.path.edges.forEach((e) => { onPath.merge(cy.getElementById(eid(e.id))); });
      // a path may run through something the filters hide: show it anyway
      onPath.removeClass("filtered");
      cy.elements().not(onPath).addClass("faded");
      onPath.addClass("on-path");
      cy.animate({ fit: { eles: onPath, padding: 60 } }, { duration: 250 });
      const names = result.path.nodes.map((n) => cy.getElementById(nid(n.id)).data("label"));
      say(`Path (${result.path.length} link${result.path.length === 1 ? "" : "s"}): ` +
        names.join(" → "));
      refreshList();
    } catch (err) {
      say(`Could not find a path: ${err.message}`, true);
    }
  });

  sharedButton.addEventListener("click", async () => {
    if (picked.length !== 2) return;
    const flt = filters();
    const names = picked.map((id) => cy.getElementById(nid(id)).data("label"));
    say(`Looking for what ${names[0]} and ${names[1]} are both linked to…`);
    try {
      const result = await ask("/shared", { entity_id: picked, case_id: caseScope(flt) });
      cy.elements().removeClass("on-path faded shown");
      const found = result.shared || [];
      const added = merge({ nodes: found.map((s) => s.entity),
        edges: found.flatMap((s) => s.edges || []) }, cy.getElementById(nid(picked[0])));
      if (added.nodes().length) await runLayout({ randomize: false, fit: false });
      let lit = cy.collection();
      picked.forEach((id) => { lit = lit.union(cy.getElementById(nid(id))); });
      for (const s of found) {
        lit = lit.union(cy.getElementById(nid(s.entity.id)));
        (s.edges || []).forEach((e) => { lit = lit.union(cy.getElementById(eid(e.id))); });
      }
      if (!found.length) {
        say(`${names[0]} and ${names[1]} share no connection among what you may see.`);
        return;
      }
      lit.removeClass("filtered");
      cy.elements().not(lit).addClass("faded");
      lit.addClass("on-path");
      say(`Shared connections of ${names[0]} and ${names[1]}: ` +
        found.map((s) => cy.getElementById(nid(s.entity.id)).data("label")).join(", "));
      refreshList();
    } catch (err) {
      say(`Could not find shared connections: ${err.message}`, true);
    }
  });

  // Chains of calls or payments leaving the first picked entity in their own
  // direction, each link dated no earlier than the one before (to the second, if picked).
  flowButton.addEventListener("click", async () => {
    if (!picked.length) return;
    const [source, target] = picked;
    const flt = filters();
    const from = cy.getElementById(nid(source)).data("label");
    const to = target ? cy.getElementById(nid(target)).data("label") : null;
    say(`Following calls and payments from ${from}${to ? " to " + to : ""}…`);
    try {
      const result = await ask("/time-paths", { source, target: target || null, limit: 50,
        max_hops: 4, case_id: caseScope(flt) });
      cy.elements().removeClass("on-path faded shown");
      const paths = result.paths || [];
      if (!paths.length) {
        say(`No chain of calls or payments going forward in time from ${from}` +
          `${to ? " to " + to : ""} among what you may see.`);
        return;
      }
      const added = merge({ nodes: paths.flatMap((p) => p.nodes),
        edges: paths.flatMap((p) => p.edges) }, cy.getElementById(nid(source)));
      if (added.nodes().length) await runLayout({ randomize: false, fit: false });
      let lit = cy.collection();
      for (const p of paths) {
        p.nodes.forEach((n) => { lit = lit.union(cy.getElementById(nid(n.id))); });
        p.edges.forEach((e) => { lit = lit.union(cy.getElementById(eid(e.id))); });
      }
      lit.removeClass("filtered");
      cy.elements().not(lit).addClass("faded");
      lit.addClass("on-path");
      const longest = paths[paths.length - 1];
      const steps = longest.edges.map((e) => `${e.type} ${String(e.first_seen).slice(0, 10)}`);
      say(`${count(paths.length, "chain", "chains")} going forward in time from ${from}; ` +
        `the longest: ${longest.nodes.map((n) => cy.getElementById(nid(n.id)).data("label"))
          .join(" → ")} (${steps.join(", ")}).`);
      refreshList();
    } catch (err) {
      say(`Could not follow calls and payments: ${err.message}`, true);
    }
  });

  document.getElementById("graph-key-players").addEventListener("click", async () => {
    say("Ranking key players…");
    try {
      const result = await ask(`/cases/${config.case_id}/key-players`, { top: 10 });
      cy.elements().removeClass("faded on-path key-player");
      merge({ nodes: result.key_players, edges: [] }, null);
      const top = result.key_players;
      const maxB = Math.max(...top.map((k) => k.betweenness), 1e-9);
      keyList.replaceChildren(...top.map((k) => {
        const n = cy.getElementById(nid(k.id));
        n.data("size", 30 + 40 * (k.betweenness / maxB));
        n.addClass("key-player");
        const li = document.createElement("li");
        li.textContent = `${n.data("label")} `;
        const m = document.createElement("span");
        m.className = "muted";
        m.textContent = `betweenness ${Number(k.betweenness).toFixed(1)} · PageRank ` +
          `${Number(k.pagerank).toFixed(3)} · ${k.degree} contacts`;
        li.append(m);
        return li;
      }));
      cy.nodes().not(".key-player").addClass("faded");
      say(top.length ? `Key players: ${top.map((k) => cy.getElementById(nid(k.id)).data("label")).join(", ")} (largest = most betweenness).`
        : "No links yet, so no key players.");
    } catch (err) {
      say(`Could not rank key players: ${err.message}`, true);
    }
  });

  document.getElementById("graph-communities").addEventListener("click", async () => {
    say("Finding communities…");
    try {
      const result = await ask(`/cases/${config.case_id}/communities`, {});
      cy.elements().removeClass("faded on-path");
      communityOf = {};
      for (const [id, c] of Object.entries(result.membership || {})) communityOf[id] = c;
      cy.batch(() => {
        cy.nodes().forEach((n) => {
          const c = communityOf[String(n.data("entity"))];
          if (c == null) n.removeData("community_color");
          else n.data("community_color", COMMUNITY_COLORS[c % COMMUNITY_COLORS.length]);
        });
      });
      colourBy = "community";
      buildLegend();
      say(`${result.communities.length} communities (${result.method}, modularity ` +
        `${Number(result.modularity).toFixed(2)}); colours now show communities.`);
    } catch (err) {
      say(`Could not find communities: ${err.message}`, true);
    }
  });

  document.getElementById("graph-clear").addEventListener("click", () => {
    clearHighlights();
    picked = [];
    showPicked();
    applyFilters();
  });
  document.getElementById("graph-fit").addEventListener("click", () => cy.fit(undefined, 30));
  document.getElementById("graph-layout").addEventListener("click", () => runLayout());

  document.getElementById("graph-png").addEventListener("click", async () => {
    const blob = await cy.png({ output: "blob-promise", full: true, scale: 2, bg: "#ffffff" });
    const url = URL.createObjectURL(blob);
    const a = document.createElement("a");
    a.href = url;
    a.download = `${config.case_number || "case"}-network.png`;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  });

  // Timeline rows: "Show in graph" highlights that link.
  document.querySelectorAll("[data-show-link]").forEach((b) => {
    b.addEventListener("click", () => {
      const e = cy.getElementById(eid(Number(b.dataset.showLink)));
      if (e.empty()) return;
      cy.elements().removeClass("shown on-path faded");
      e.removeClass("filtered").addClass("shown");
      e.connectedNodes().removeClass("filtered");
      cy.elements().not(e.union(e.connectedNodes())).addClass("faded");
      cy.animate({ fit: { eles: e.connectedNodes(), padding: 80 } }, { duration: 250 });
      document.getElementById("graph").scrollIntoView();
    });
  });

  // Possible duplicates: "Show in graph" lights up both entities of the pair (an
  // entity of another case is drawn only once an expand has brought it in).
  document.querySelectorAll("[data-show-entities]").forEach((b) => {
    b.addEventListener("click", () => {
      let lit = cy.collection();
      b.dataset.showEntities.split(",").forEach((id) => {
        lit = lit.union(cy.getElementById(nid(Number(id))));
      });
      cy.elements().removeClass("shown on-path faded");
      if (lit.empty()) {
        say("Neither entity of this pair is drawn: expand their neighbours to bring them in.");
        return;
      }
      lit.removeClass("filtered").addClass("on-path");
      cy.elements().not(lit).addClass("faded");
      cy.animate({ fit: { eles: lit, padding: 80 } }, { duration: 250 });
      say(lit.length === 2 ? `Possible duplicates: ${lit.map((n) => n.data("label")).join(" and ")}.`
        : `Only ${lit.data("label")} of this pair is drawn here.`);
      document.getElementById("graph").scrollIntoView();
    });
  });

  buildLegend();
  showPicked();
  applyFilters();
  say(cy.nodes().length
    ? `${count(cy.nodes().length, "entity", "entities")}, ` +
      `${count(cy.edges().length, "link", "links")}. Click an entity to expand ` +
      "it and pick it; pick two to find a path."
    : "No entities yet: add some below.");
  runLayout().then(() => firstLayoutDone());

  // --------------------------------------------------------------- timeline chart
  function drawTimelineChart(cfg) {
    const canvas = document.getElementById("timeline-chart");
    if (!canvas || !cfg) return;
    if (typeof window.Chart !== "function") { canvas.hidden = true; return; }
    const perMonth = {};
    for (const e of cfg.edges) {
      const when = e.first_seen || e.last_seen;
      if (!when) continue;
      const month = when.slice(0, 7);
      perMonth[month] = (perMonth[month] || 0) + 1;
    }
    const months = Object.keys(perMonth).sort();
    if (!months.length) { canvas.hidden = true; return; }
    // every month between the first and the last, so gaps show as gaps
    const labels = [];
    let [y, m] = months[0].split("-").map(Number);
    const [ly, lm] = months[months.length - 1].split("-").map(Number);
    while (y < ly || (y === ly && m <= lm)) {
      labels.push(`${y}-${String(m).padStart(2, "0")}`);
      m += 1;
      if (m > 12) { m = 1; y += 1; }
      if (labels.length > 600) break;
    }
    new window.Chart(canvas, {
      type: "bar",
      data: { labels, datasets: [{ label: "links first seen", data: labels.map((l) => perMonth[l] || 0),
        backgroundColor: "#1f4e8c", maxBarThickness: 48 }] },
      options: { animation: false, responsive: true, maintainAspectRatio: false,
        plugins: { legend: { display: false } },
        scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } },
    });
  }
})();
