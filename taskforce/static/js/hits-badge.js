// The live deconfliction badge in the nav: polls /api/v1/notifications and shows
// the unread count without a page reload (no inline script; CSP script-src 'self').
// On the hits list, a change of the count also refreshes the list's rows.
(function () {
  "use strict";
  const badge = document.getElementById("hits-badge");
  if (!badge) return;
  const url = badge.dataset.url || "/api/v1/notifications";
  const visibleEvery = 5000;   // ms while the tab is visible
  const hiddenEvery = 30000;   // ms while it is hidden
  let last = null;
  let timer = null;

  function show(count) {
    const n = Number(count) || 0;
    badge.textContent = n > 99 ? "99+" : String(n);
    badge.hidden = n === 0;
    badge.setAttribute("aria-label", n === 1 ? "1 new deconfliction hit" : n + " new deconfliction hits");
    badge.dataset.count = String(n);
  }

  function cell(text, cls) {
    const td = document.createElement("td");
    if (cls) td.className = cls;
    td.textContent = text;
    return td;
  }

  function pocText(p) {
    return [p.name, p.phone, p.email].filter(Boolean).join(" · ");
  }

  // Rebuild the hit list's rows from the API (the same redacted serializer as the page).
  function refreshList() {
    const table = document.getElementById("hit-list");
    if (!table) return;
    const status = table.dataset.status || "open";
    const query = status === "all" ? "" : "?status=" + encodeURIComponent(status);
    fetch("/api/v1/deconfliction/hits" + query, {
      credentials: "same-origin", headers: { Accept: "application/json" },
    })
      .then((r) => (r.ok ? r.json() : null))
      .then((data) => {
        if (!data) return;
        const body = table.tBodies[0];
        body.textContent = "";
        for (const h of data.items) {
          const mine = h.sides.filter((s) => s.mine);
          const others = h.sides.filter((s) => !s.mine);
          const tr = document.createElement("tr");
          tr.dataset.hitId = String(h.id);
          const num = document.createElement("td");
          num.className = "mono";
          const a = document.createElement("a");
          a.href = "/deconfliction/hits/" + h.id;
          a.textContent = h.number;
          num.appendChild(a);
          tr.appendChild(num);
          tr.appendChild(cell(h.kind_label));
          tr.appendChild(cell(Number(h.score).toFixed(2)));
          tr.appendChild(cell(h.status_label));
          tr.appendChild(cell(mine.filter((s) => s.case).map((s) => s.case.number).join(", ") || "—", "mono"));
          tr.appendChild(cell(others.map((s) => s.agency).join(", ")));
          tr.appendChild(cell(others.map((s) => pocText(s.poc)).join(" / ")));
          tr.appendChild(cell(others.map((s) => s.operation_kind_label || s.identifier_kind.replace(/_/g, " ")).join(", ")));
          tr.appendChild(cell(h.created_at ? h.created_at.replace("T", " ").slice(0, 16) + " UTC" : ""));
          body.appendChild(tr);
        }
        const none = document.querySelector("[data-testid=no-hits]");
        if (none) none.hidden = data.items.length > 0;
      })
      .catch(() => {});
  }

  function poll() {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then((r) => (r.ok ? r.json() : null))
      .then((data) => {
        if (!data) return;
        if (last !== null && data.unread !== last) refreshList();
        last = data.unread;
        show(data.unread);
      })
      .catch(() => {})
      .finally(schedule);
  }

  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(poll, document.hidden ? hiddenEvery : visibleEvery);
  }

  document.addEventListener("visibilitychange", () => { if (!document.hidden) poll(); });
  show(badge.dataset.count || 0);
  poll();
})();
