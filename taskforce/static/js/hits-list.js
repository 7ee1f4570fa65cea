// The deconfliction hit list: when the nav badge (live-badge.js) sees the unread count
// change, rebuild the rows from the API (the same redacted serializer as the page),
// so a new hit shows without a reload.
(function () {
  "use strict";
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

  document.addEventListener("live-badge:change", (event) => {
    if (event.detail.badge === "hits-badge") refreshList();
  });
})();
