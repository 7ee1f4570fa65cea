// Imports: send the CSV as the raw request body to the API (with an upload progress
// bar), then follow the import's live status: the run page polls its JSON status
// and moves the progress bar until the import is done or failed. Without
// JavaScript the form posts multipart to the page and the run page shows the
// status as of its loading. No inline script (CSP).
(function () {
  "use strict";

  function say(el, text, bad) {
    if (!el) return;
    el.textContent = text;
    el.className = bad ? "error" : "muted";
  }

  // The upload form on a case's import page.
  const form = document.getElementById("import-upload");
  if (form && window.XMLHttpRequest) {
    const bar = document.getElementById("im-progress");
    const status = document.getElementById("im-status");
    const button = form.querySelector("button[type=submit]");
    form.addEventListener("submit", function (event) {
      const file = form.elements.file.files[0];
      if (!file) return;
      event.preventDefault();
      const params = new URLSearchParams();
      params.set("kind", form.elements.kind.value);
      params.set("filename", file.name);
      const mapping = form.elements.mapping_id.value;
      if (mapping) params.set("mapping_id", mapping);
      const account = form.elements.account.value.trim();
      if (account) params.set("account", account);
      const cells = form.elements.cell_sites.value;
      if (cells) params.set("cell_sites", cells);
      const xhr = new XMLHttpRequest();
      xhr.open("POST", form.dataset.apiUrl + "?" + params.toString());
      xhr.setRequestHeader("Content-Type", "text/csv");
      xhr.setRequestHeader("Accept", "application/json");
      xhr.setRequestHeader("X-CSRFToken", form.elements.csrf_token.value);
      bar.hidden = false;
      bar.value = 0;
      button.disabled = true;
      xhr.upload.addEventListener("progress", function (e) {
        if (!e.lengthComputable) return;
        bar.value = Math.floor((e.loaded / e.total) * 100);
        say(status, "Sending the file: " + bar.value + "%");
      });
      xhr.upload.addEventListener("load", function () {
        bar.removeAttribute("value");
        say(status, "File sent; checking it and storing it as evidence…");
      });
      xhr.addEventListener("load", function () {
        let body = null;
        try { body = JSON.parse(xhr.responseText); } catch (e) { body = null; }
        if ((xhr.status === 202 || xhr.status === 200) && body && body.page_url) {
          say(status, body.message || "Import queued.");
          window.location.assign(body.page_url + (body.created ? "" : "?repeat=1"));
          return;
        }
        button.disabled = false;
        bar.hidden = true;
        say(status, body && body.error ? body.error.message : "The import failed (" + xhr.status + ").", true);
      });
      xhr.addEventListener("error", function () {
        button.disabled = false;
        bar.hidden = true;
        say(status, "The connection was lost; nothing was imported. Try again.", true);
      });
      xhr.send(file);
    });
  }

  // The live status of one import.
  const panel = document.getElementById("import-status");
  if (!panel || panel.dataset.done === "true" || !window.fetch) return;
  const LABELS = { queued: "Queued", running: "Running", done: "Done", failed: "Failed" };
  const progress = document.getElementById("run-progress");
  const result = document.getElementById("run-result");
  const error = document.getElementById("run-error");
  const badBody = document.getElementById("bad-rows-body");

  function text(testid, value) {
    const el = panel.querySelector('[data-testid="' + testid + '"]');
    if (el) el.textContent = String(value);
  }

  function show(s) {
    text("run-status", LABELS[s.status] || s.status);
    text("rows-read", s.rows_read);
    text("rows-loaded", s.rows_loaded);
    text("rows-bad", s.rows_bad);
    text("rows-skipped", s.rows_skipped);
    progress.value = Math.round(s.progress * 100);
    if (s.status === "done") {
      result.textContent = s.entities_created + " entities created, " + s.entities_attached +
        " attached, " + s.links_created + " links created, " + s.links_merged + " merged.";
    }
    if (s.error) { error.textContent = s.error; error.hidden = false; }
    if (s.bad_rows && s.bad_rows.length) {
      badBody.replaceChildren();
      for (const bad of s.bad_rows) {
        const tr = document.createElement("tr");
        const line = document.createElement("td");
        line.textContent = String(bad.line);
        const reason = document.createElement("td");
        reason.textContent = bad.reason;
        tr.append(line, reason);
        badBody.append(tr);
      }
    }
  }

  let delay = 500;
  function poll() {
    fetch(panel.dataset.statusUrl, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
      .then(function (s) {
        show(s);
        if (s.status === "done" || s.status === "failed") { panel.dataset.done = "true"; return; }
        delay = Math.min(delay * 1.3, 3000);
        window.setTimeout(poll, delay);
      })
      .catch(function () { window.setTimeout(poll, 3000); });
  }
  poll();
})();
