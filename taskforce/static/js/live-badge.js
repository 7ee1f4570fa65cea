// Live counters in the nav (deconfliction hits, survivor alerts). Each element with
// data-live-badge polls its data-url and shows the number in data-field, without a
// page reload (no inline script: CSP script-src 'self'). When the number changes it
// fires "live-badge:change" on the document, so the page's own list can refresh.
(function () {
  "use strict";
  const hiddenEvery = 30000;  // ms between polls while the tab is hidden

  function start(badge) {
    const field = badge.dataset.field;
    const every = Number(badge.dataset.every) || 5000;
    let last = null;
    let timer = null;

    function show(count) {
      const n = Number(count) || 0;
      badge.textContent = n > 99 ? "99+" : String(n);
      badge.hidden = n === 0;
      badge.setAttribute("aria-label", n + " " + (n === 1 ? badge.dataset.one : badge.dataset.many));
      badge.dataset.count = String(n);
    }

    function poll() {
      fetch(badge.dataset.url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then((r) => (r.ok ? r.json() : null))
        .then((data) => {
          if (!data) return;
          const count = data[field];
          if (last !== null && count !== last) {
            document.dispatchEvent(new CustomEvent("live-badge:change",
              { detail: { badge: badge.id, count: count, rose: count > last } }));
          }
          last = count;
          show(count);
        })
        .catch(() => {})
        .finally(schedule);
    }

    function schedule() {
      clearTimeout(timer);
      timer = setTimeout(poll, document.hidden ? hiddenEvery : every);
    }

    document.addEventListener("visibilitychange", () => { if (!document.hidden) poll(); });
    show(badge.dataset.count || 0);
    poll();
  }

  document.querySelectorAll("[data-live-badge]").forEach(start);
})();
