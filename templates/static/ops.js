// Live figures and charts for the ops dashboard: every 2 s, exact figures from the server.
(function () {
  "use strict";
  function get(obj, path) {
    return path.split(".").reduce(function (o, k) { return o == null ? o : o[k]; }, obj);
  }
  function show(value, unit) {
    if (value == null) return "–";
    if (unit === "s") {
      if (value < 60) return Math.round(value) + " s";
      var m = Math.round(value / 60);
      return m >= 120 ? (m / 60).toFixed(1) + " h" : m + " min";
    }
    return String(value);
  }
  function draw(svg, data) {
    var keys = svg.dataset.series.split(",");
    var all = [];
    keys.forEach(function (k) { (get(data, k) || []).forEach(function (v) { if (v != null && isFinite(v)) all.push(v); }); });
    // The smallest full scale: an error rate of 2% should not be a flat line at the bottom.
    var max = Math.max.apply(null, all.concat([parseFloat(svg.dataset.floor || "1")]));
    svg.innerHTML = "";
    keys.forEach(function (k, i) {
      var values = get(data, k) || [];
      var pts = values.map(function (v, j) {
        var x = values.length < 2 ? 0 : (j / (values.length - 1)) * 300;
        return v == null || !isFinite(v) ? null : x.toFixed(1) + "," + (78 - (v / max) * 74).toFixed(1);
      }).filter(Boolean);
      var line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
      line.setAttribute("points", pts.join(" "));
      line.setAttribute("class", "s" + i);
      svg.appendChild(line);
    });
  }
  function badges(el, settings) {
    var names = [];
    if (settings.paused) names.push("paused");
    if (settings.closed) names.push("closed");
    if (settings.sold_out) names.push(settings.sold_out_by === "backend" ? "sold out (booking site)" : "sold out");
    if (settings.autopilot && settings.autopilot.enabled) names.push("autopilot");
    el.replaceChildren.apply(el, names.map(function (name) {
      var badge = document.createElement("span");
      badge.className = "badge";
      badge.textContent = name;
      return badge;
    }));
  }
  var ticks = 0;
  function refresh() {
    var rooms = document.querySelectorAll("section.room");
    var withSeries = ticks++ % 5 === 0;
    rooms.forEach(function (section) {
      var url = "/_waitroom/ops/api/rooms/" + encodeURIComponent(section.dataset.room) + (withSeries ? "?series=1" : "");
      fetch(url, { credentials: "same-origin" }).then(function (r) {
        if (r.status === 401) { location.href = "/_waitroom/ops/login"; return null; }
        return r.ok ? r.json() : null;
      }).then(function (f) {
        if (!f) return;
        section.querySelectorAll("[data-k]").forEach(function (el) {
          if (el.dataset.k === "badges") { badges(el, f.settings); return; }
          var value = get(f, el.dataset.k);
          var text = value == null && el.dataset.none ? el.dataset.none : show(value, el.dataset.unit);
          // Slower than the top latency bucket: the figure is a floor, not a value.
          el.textContent = el.dataset.over && get(f, el.dataset.over) ? "> " + text : text;
        });
        if (f.series) section.querySelectorAll("svg.chart").forEach(function (svg) { draw(svg, f.series); });
      }).catch(function () {});
    });
  }
  refresh();
  setInterval(refresh, 2000);
})();
