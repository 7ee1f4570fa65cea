// The survivor-alert list: when the nav badge (live-badge.js) sees a new alert, reload
// the list. It is rendered by the server through the one redacting serializer, so
// names are never rebuilt here.
(function () {
  "use strict";
  document.addEventListener("live-badge:change", (event) => {
    if (event.detail.badge !== "alerts-badge" || !event.detail.rose) return;
    if (!document.querySelector("form:focus-within")) window.location.reload();
  });
})();
