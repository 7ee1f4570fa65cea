// The coordinator dashboard's map and charts (templates/deconfliction/dashboard.html).
// The page is complete without this file: its tables hold every figure. When the
// vendored Leaflet and Chart.js are installed (static/vendor/, from npm), this draws
// the operations of the next 72 hours on a map and the weekly figures as charts,
// from /api/v1/deconfliction/dashboard, and refreshes them every minute.
// No inline script (CSP script-src 'self'); text goes in through textContent only.
(function () {
  "use strict";
  const holder = document.getElementById("ops-map");
  if (!holder) return;
  const api = holder.dataset.api;
  const REFRESH_MS = 60000;
  let map = null;
  let layer = null;
  const charts = {};

  function fmt(iso) {
    return iso ? iso.replace("T", " ").slice(0, 16) + " UTC" : "";
  }

  function popup(o) {
    const div = document.createElement("div");
    const lines = [
      o.kind_label + (o.undercover ? " (undercover officers)" : ""),
      o.agency,
      fmt(o.starts_at) + " to " + fmt(o.ends_at),
      "Contact: " + [o.poc.name, o.poc.phone, o.poc.email].filter(Boolean).join(" · "),
      o.in_conflict ? "In an open conflict" : "",
    ];
    for (const text of lines) {
      if (!text) continue;
      const p = document.createElement("div");
      p.textContent = text;
      div.appendChild(p);
    }
    return div;
  }

  function drawMap(ops) {
    if (holder.dataset.map !== "on" || typeof window.L === "undefined") return;
    const L = window.L;
    if (!map) {
      holder.hidden = false;
      holder.style.height = "420px";  // CSSOM, allowed by the CSP (no style attribute)
      // No tile layer: this machine serves no map tiles and the CSP allows images
      // from this site only; operations are drawn on a plain plane with a scale.
      map = L.map(holder, { zoomControl: true, attributionControl: false });
      L.control.scale({ metric: true, imperial: false }).addTo(map);
      layer = L.layerGroup().addTo(map);
      map.setView([39.5, -98.35], 4);
    }
    layer.clearLayers();
    const bounds = [];
    for (const o of ops) {
      const colour = o.in_conflict ? "#b00020" : "#1f4e8c";
      const circle = L.circle([o.latitude, o.longitude], {
        radius: o.radius_m, color: colour, weight: 2, fillOpacity: 0.25,
      });
      circle.bindPopup(popup(o));
      circle.addTo(layer);
      L.circleMarker([o.latitude, o.longitude], { radius: 4, color: colour }).addTo(layer);
      bounds.push(circle.getBounds());
    }
    if (bounds.length) {
      let all = bounds[0];
      for (const b of bounds.slice(1)) all = all.extend(b);
      map.fitBounds(all.pad(0.2), { maxZoom: 15 });
    }
    holder.dataset.drawn = String(ops.length);
  }

  function chart(id, config) {
    const canvas = document.getElementById(id);
    if (!canvas) return;
    if (charts[id]) charts[id].destroy();
    // a box of fixed height for the chart to fill (CSSOM: allowed by the CSP)
    const box = document.createElement("div");
    box.style.position = "relative";
    box.style.height = "260px";
    if (canvas.parentNode.dataset.chartBox !== "1") {
      canvas.parentNode.insertBefore(box, canvas);
      box.appendChild(canvas);
      box.dataset.chartBox = "1";
    }
    config.options.maintainAspectRatio = false;
    config.options.responsive = true;
    charts[id] = new window.Chart(canvas, config);
  }

  function drawCharts(weeks) {
    if (holder.dataset.charts !== "on" || typeof window.Chart === "undefined") return;
    const box = document.getElementById("dashboard-charts");
    if (box) box.hidden = false;
    const labels = weeks.map((w) => w.week);
    const kinds = weeks.length ? Object.keys(weeks[0].hits) : [];
    const palette = ["#1f4e8c", "#e07b00", "#6a3d9a", "#b00020", "#1e6b3a"];
    chart("chart-hits", {
      type: "bar",
      data: {
        labels,
        datasets: kinds.map((k, i) => ({
          label: k.replace(/_/g, " "), data: weeks.map((w) => w.hits[k]),
          backgroundColor: palette[i % palette.length], stack: "hits",
        })),
      },
      options: { animation: false, plugins: { title: { display: true, text: "Hits found per week" } },
        scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } } } },
    });
    chart("chart-rate", {
      type: "line",
      data: {
        labels,
        datasets: [
          { label: "operations that hit (%)", borderColor: "#b00020", spanGaps: true,
            data: weeks.map((w) => (w.operation_hit_rate === null ? null : 100 * w.operation_hit_rate)) },
          { label: "target hits per 1,000 registrations", borderColor: "#1f4e8c", spanGaps: true,
            data: weeks.map((w) => w.target_hits_per_1000) },
        ],
      },
      options: { animation: false, plugins: { title: { display: true, text: "Hit rate" } },
        scales: { y: { beginAtZero: true } } },
    });
    chart("chart-ack", {
      type: "line",
      data: {
        labels,
        datasets: [
          { label: "median (h)", borderColor: "#1e6b3a", spanGaps: true, data: weeks.map((w) => w.ack_median_hours) },
          { label: "90th percentile (h)", borderColor: "#e07b00", spanGaps: true, data: weeks.map((w) => w.ack_p90_hours) },
        ],
      },
      options: { animation: false, plugins: { title: { display: true, text: "Time to acknowledge" } },
        scales: { y: { beginAtZero: true } } },
    });
    holder.dataset.charted = String(weeks.length);
  }

  function load() {
    fetch(api, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then((r) => (r.ok ? r.json() : null))
      .then((data) => {
        if (!data) return;
        drawMap(data.upcoming || []);
        drawCharts(data.weeks || []);
      })
      .catch(() => {})
      .finally(() => setTimeout(load, REFRESH_MS));
  }

  // The vendor scripts are deferred before this one, so they have run by now.
  load();
})();
