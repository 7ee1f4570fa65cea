// Renders the OpenAPI description as a readable list (no CDN, no inline script).
(function () {
  const root = document.getElementById("api-docs");
  if (!root) return;
  fetch(root.dataset.spec, { credentials: "same-origin" })
    .then((r) => r.json())
    .then((spec) => {
      root.textContent = "";
      const paths = Object.keys(spec.paths || {}).sort();
      for (const path of paths) {
        for (const [method, op] of Object.entries(spec.paths[path])) {
          const section = document.createElement("details");
          const summary = document.createElement("summary");
          summary.innerHTML = "";
          const m = document.createElement("code");
          m.textContent = method.toUpperCase() + " " + path;
          summary.appendChild(m);
          summary.append(" " + (op.summary || ""));
          section.appendChild(summary);
          const pre = document.createElement("pre");
          pre.textContent = JSON.stringify(
            { parameters: op.parameters, requestBody: op.requestBody, responses: op.responses },
            null, 2);
          section.appendChild(pre);
          root.appendChild(section);
        }
      }
    })
    .catch((e) => { root.textContent = "Could not load the API description: " + e; });
})();
