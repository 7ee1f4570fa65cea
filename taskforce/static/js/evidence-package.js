// Live status of a package being built: polls the JSON API and updates the
// progress bar; reloads the page once the package is ready (or failed).
// No inline script (CSP).
(function () {
  "use strict";
  const section = document.getElementById("status");
  if (!section || section.dataset.status !== "building" || !window.fetch) return;
  const bar = document.getElementById("pk-progress");
  const percent = document.getElementById("pk-percent");
  function poll() {
    fetch(section.dataset.packageUrl, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (body) {
        if (!body) { setTimeout(poll, 3000); return; }
        if (body.status !== "building") { window.location.reload(); return; }
        if (bar) bar.value = body.progress;
        if (percent) percent.textContent = body.progress + "%";
        setTimeout(poll, 1000);
      })
      .catch(function () { setTimeout(poll, 3000); });
  }
  setTimeout(poll, 500);
})();
