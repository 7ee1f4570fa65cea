// Evidence upload with a progress bar: the chosen file is sent as the RAW
// request body (application/octet-stream) to the API, which streams it into
// the evidence store while it hashes it. Metadata goes in the query string;
// the session's CSRF token in the X-CSRFToken header. Without JavaScript the
// same form posts multipart to the page instead. No inline script (CSP).
(function () {
  "use strict";
  const form = document.getElementById("evidence-upload");
  if (!form || !window.XMLHttpRequest) return;
  const bar = document.getElementById("ev-progress");
  const status = document.getElementById("ev-status");
  const button = form.querySelector("button[type=submit]");
  const FIELDS = ["description", "source", "collected_at", "collected_by", "collected_place", "sha256"];

  function say(text, bad) {
    status.textContent = text;
    status.className = bad ? "error" : "muted";
  }

  function size(n) {
    const units = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
    return (i ? n.toFixed(1) : String(n)) + " " + units[i];
  }

  form.addEventListener("submit", function (event) {
    const file = form.elements.file.files[0];
    if (!file) return; // let the browser say the field is required
    event.preventDefault();
    const params = new URLSearchParams();
    for (const name of FIELDS) {
      const field = form.elements[name];
      if (field && field.value.trim()) params.set(name, field.value.trim());
    }
    params.set("filename", file.name);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", form.dataset.apiUrl + "?" + params.toString());
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    xhr.setRequestHeader("Accept", "application/json");
    xhr.setRequestHeader("X-CSRFToken", form.elements.csrf_token.value);
    bar.hidden = false;
    bar.value = 0;
    button.disabled = true;
    const started = Date.now();
    xhr.upload.addEventListener("progress", function (e) {
      if (!e.lengthComputable) return;
      bar.value = Math.floor((e.loaded / e.total) * 100);
      const secs = Math.max((Date.now() - started) / 1000, 0.001);
      say("Sent " + size(e.loaded) + " of " + size(e.total) + " (" + size(e.loaded / secs) + "/s)");
    });
    xhr.upload.addEventListener("load", function () {
      bar.removeAttribute("value"); // indeterminate while the server finishes and records it
      say("All bytes sent; checking the hash and recording the item…");
    });
    xhr.addEventListener("load", function () {
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch (e) { body = null; }
      if (xhr.status === 201 && body && body.page_url) {
        bar.value = 100;
        say("Stored: SHA-256 " + body.sha256);
        window.location.assign(body.page_url);
        return;
      }
      button.disabled = false;
      bar.hidden = true;
      const message = body && body.error ? body.error.message : "The upload failed (" + xhr.status + ").";
      say(message, true);
    });
    xhr.addEventListener("error", function () {
      button.disabled = false;
      bar.hidden = true;
      say("The connection was lost during the upload; nothing was recorded. Try again.", true);
    });
    xhr.addEventListener("abort", function () {
      button.disabled = false;
      bar.hidden = true;
      say("Upload cancelled; nothing was recorded.", true);
    });
    xhr.send(file);
  });
})();
