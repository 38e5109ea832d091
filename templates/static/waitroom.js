// Keeps the waiting page current without reloading it. The server sends the status already
// written in the visitor's language (display=1), so this file holds no words of its own; the
// page works without it by refreshing itself.
(function () {
  "use strict";
  var box = document.getElementById("wr-status");
  if (!box || box.dataset.state === "closed" || box.dataset.state === "admitted") return;
  var live = document.getElementById("wr-live");
  var here = location.pathname + location.search;
  var url = "/_waitroom/api/rooms/" + encodeURIComponent(box.dataset.room) +
    "/status?display=1&path=" + encodeURIComponent(here) + "&layout=";
  // While the section keeps its shape (its "layout"), the server sends only the new figures.
  var layout = box.dataset.layout || "";
  var grace = Number(box.dataset.grace) || 300;
  var shownPosition = Number(box.dataset.position) || Infinity;
  var shownProgress = Number(box.dataset.progress) || 0;
  var timer = null;

  function localTimes() {
    var times = box.querySelectorAll("time[data-countdown]");
    for (var i = 0; i < times.length; i++) {
      var left = Math.max(0, Math.round((Date.parse(times[i].dateTime) - Date.now()) / 1000));
      var h = Math.floor(left / 3600), m = Math.floor(left % 3600 / 60), s = left % 60;
      times[i].textContent = (h ? h + ":" + (m < 10 ? "0" : "") : "") + m + ":" + (s < 10 ? "0" : "") + s;
    }
  }

  function apply(s) {
    var d = s.display || {};
    // A place that lapsed (a phone asleep past the grace period) is a new place at the end of
    // the line: its reply carries a notice and a new ticket, and must be shown.
    var rejoined = s.notice != null || s.ticket != null;
    // Otherwise a position never goes up: a higher one is a lagging server's, not shown.
    if (!rejoined && s.position != null && s.position > shownPosition && s.state !== "admitted") return;
    if (rejoined) shownProgress = 0;
    if (s.progress_percent != null && s.progress_percent < shownProgress) s.progress_percent = shownProgress;
    if (d.html != null && d.html !== box.innerHTML) {
      // The old section takes the keyboard focus with it: give it back to the element with the
      // same id in the new one (each focusable element has an id), else to the heading.
      var had = box.contains(document.activeElement) ? document.activeElement.id || "wr-heading" : null;
      box.innerHTML = d.html;
      var again = had && (document.getElementById(had) || document.getElementById("wr-heading"));
      if (again) again.focus();
    }
    if (d.fill) {
      for (var id in d.fill) {
        var el = document.getElementById(id);
        if (el && el.textContent !== d.fill[id]) el.textContent = d.fill[id];
      }
    }
    if (d.layout != null) layout = d.layout;
    box.dataset.state = s.state;
    if (d.title) document.title = d.title;
    var bar = box.querySelector("progress");
    if (bar && s.progress_percent != null) { bar.value = s.progress_percent; shownProgress = s.progress_percent; }
    // A new place, or a section of another shape (paused, moving again, sold out, lapsed,
    // closed, your turn): the server's words say which.
    if (d.announce && (d.html != null || s.position !== shownPosition)) live.textContent = d.announce;
    if (s.position != null && s.state !== "admitted") shownPosition = s.position;
    if (s.state === "admitted") {
      var heading = document.getElementById("wr-heading");
      if (heading) heading.focus();
    }
    localTimes();
  }

  function schedule(seconds) {
    // A hidden tab asks less often, but always well inside the grace period so the place is kept.
    var wait = Math.max(2, seconds);
    if (document.hidden) wait = Math.min(wait * 3, grace / 3);
    clearTimeout(timer);
    timer = setTimeout(poll, wait * 1000);
  }

  function poll() {
    fetch(url + encodeURIComponent(layout), { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.json().then(function (body) { return [r, body]; }); })
      .then(function (rb) {
        var r = rb[0], s = rb[1];
        if (r.ok) {
          apply(s);
          if (s.state !== "admitted" && s.state !== "closed") schedule(s.poll_after_seconds);
        } else if (r.status === 400 || r.status === 401) {
          location.reload();  // the ticket is gone or damaged: the page itself says what to do
        } else {
          schedule(Number(r.headers.get("Retry-After")) || 10);
        }
      })
      .catch(function () { schedule(10); });
  }

  localTimes();
  // A countdown ticks each second, or each half minute for people who asked for less motion.
  var calm = window.matchMedia && window.matchMedia("(prefers-reduced-motion: reduce)").matches;
  setInterval(localTimes, calm ? 30000 : 1000);
  document.addEventListener("visibilitychange", function () { if (!document.hidden) schedule(2); });
  schedule(Number(box.dataset.poll) || 5);
})();
