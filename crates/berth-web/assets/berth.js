// Berth dashboard: the live parts, by server-sent events. Every page works without this file:
// it only keeps what a page shows up to date. An element with `data-events="URL"` listens there;
// `data-kind="log"` appends each line, `data-kind="event"` adds it at the top,
// `data-kind="status"` replaces its text; on the `end`
// event the stream is closed and, with `data-reload`, the page reloaded (a build that finished).
(function () {
  "use strict";
  function listen(el) {
    var url = el.getAttribute("data-events");
    if (!url || !window.EventSource) { return; }
    var kind = el.getAttribute("data-kind");
    var replay = el.hasAttribute("data-replay");
    var src = new EventSource(url);
    var live = document.querySelector("[data-live-for='" + el.id + "']");
    src.onopen = function () {
      // A stream that replays from the start replaces what the page showed.
      if (replay) { el.textContent = ""; }
      if (live) { live.textContent = "live"; }
    };
    src.onmessage = function (e) {
      if (kind === "log") {
        var atEnd = el.scrollTop + el.clientHeight >= el.scrollHeight - 4;
        el.appendChild(document.createTextNode(e.data + "\n"));
        if (atEnd) { el.scrollTop = el.scrollHeight; }
      } else if (kind === "event") {
        // Newest first, as the page lists them.
        var li = document.createElement("li");
        li.textContent = e.data;
        el.insertBefore(li, el.firstChild);
      } else {
        el.textContent = e.data;
      }
    };
    src.addEventListener("end", function () {
      src.close();
      if (live) { live.textContent = "ended"; }
      if (el.hasAttribute("data-reload")) { window.location.reload(); }
    });
    src.onerror = function () {
      if (live && src.readyState === EventSource.CLOSED) { live.textContent = "disconnected"; }
    };
  }
  document.addEventListener("DOMContentLoaded", function () {
    var els = document.querySelectorAll("[data-events]");
    for (var i = 0; i < els.length; i++) { listen(els[i]); }
  });
})();
