// The survivor-alert badge in the nav: polls /api/v1/victims/alerts/count and shows
// the number of new alerts for the specialist's agency without a page reload
// (no inline script; CSP script-src 'self'). On the alert list, a change of the
// count reloads the list so a new alert shows up at once.
(function () {
  "use strict";
  const badge = document.getElementById("alerts-badge");
  if (!badge) return;
  const url = badge.dataset.url || "/api/v1/victims/alerts/count";
  const visibleEvery = 4000;   // ms while the tab is visible: alerts are due within 5 s
  const hiddenEvery = 30000;   // ms while it is hidden
  let last = null;
  let timer = null;

  function show(count) {
    const n = Number(count) || 0;
    badge.textContent = n > 99 ? "99+" : String(n);
    badge.hidden = n === 0;
    badge.setAttribute("aria-label", n === 1 ? "1 new survivor alert" : n + " new survivor alerts");
    badge.dataset.count = String(n);
  }

  function refreshList() {
    // The list is rendered by the server through the one redacting serializer:
    // reload it rather than rebuild names here.
    if (document.getElementById("alert-list") && !document.querySelector("form:focus-within")) {
      window.location.reload();
    }
  }

  function poll() {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then((r) => (r.ok ? r.json() : null))
      .then((data) => {
        if (!data) return;
        if (last !== null && data.open > last) refreshList();
        last = data.open;
        show(data.open);
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
