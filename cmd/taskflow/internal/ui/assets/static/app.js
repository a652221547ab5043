// taskflow dashboard: live refresh of the overview and a flow's audit log.
// Every value from the server is written with textContent, never as HTML.
(function () {
  "use strict";

  function text(el, s) { el.textContent = s; }

  function fmtDur(ns) {
    if (!ns || ns <= 0) return "0s";
    var ms = Math.round(ns / 1e6);
    if (ms < 1000) return ms + "ms";
    var s = ms / 1000;
    if (s < 60) return s.toFixed(3).replace(/\.?0+$/, "") + "s";
    var m = Math.floor(s / 60);
    return m + "m" + Math.round(s - m * 60) + "s";
  }

  function refreshStats() {
    var root = document.querySelector("[data-live=stats]");
    if (!root) return;
    var every = parseInt(document.body.getAttribute("data-refresh-ms"), 10) || 2000;
    function once() {
      fetch("/api/stats", { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
        .then(function (st) {
          var vals = {
            tick_lag: fmtDur(st.tick_lag_ns),
            leases_held: st.leases_held,
            leases_expired: st.leases_expired,
            bridge_backlog: st.bridge_backlog,
            bridge_pending: st.bridge_pending,
            early_events: st.early_events,
            joining: st.joining,
            relay: st.relay,
            relay_due: st.relay_due,
            ready_stale: st.ready_stale,
            schedules: st.schedules,
            schedules_paused: st.schedules_paused,
            schedules_due: st.schedules_due,
            schedule_lag: fmtDur(st.schedule_lag_ns)
          };
          (st.statuses || []).forEach(function (c) { vals["status." + c.status] = c.count; });
          (st.ready || []).forEach(function (q) {
            vals["ready." + q.controller] = q.depth;
            vals["ready_stale." + q.controller] = q.stale;
          });
          root.querySelectorAll("[data-stat]").forEach(function (el) {
            var k = el.getAttribute("data-stat");
            if (Object.prototype.hasOwnProperty.call(vals, k)) text(el, String(vals[k]));
          });
          var when = document.getElementById("refreshed");
          if (when) text(when, "as of " + new Date().toLocaleTimeString());
        })
        .catch(function () {})
        .finally(function () { setTimeout(once, every); });
    }
    setTimeout(once, every);
  }

  function liveEvents() {
    var list = document.getElementById("events");
    if (!list || !window.EventSource) return;
    var state = document.getElementById("live-state");
    var es = new EventSource(list.getAttribute("data-live-url"));
    es.onopen = function () { if (state) text(state, "(live)"); };
    es.onerror = function () { if (state) text(state, "(reconnecting…)"); };
    es.onmessage = function (m) {
      var ev;
      try { ev = JSON.parse(m.data); } catch (e) { return; }
      if (list.querySelector('[data-event-id="' + CSS.escape(String(ev.ID)) + '"]')) return;
      var li = document.createElement("li");
      li.className = "new";
      li.setAttribute("data-event-id", String(ev.ID));
      var head = document.createElement("div");
      head.className = "ev-head";
      var kind = document.createElement("span");
      kind.className = "kind";
      text(kind, ev.Kind);
      var meta = document.createElement("span");
      meta.className = "muted";
      text(meta, " #" + ev.ID + " · rev " + ev.Revision + " · " + ev.At + (ev.Lease ? " · lease " + ev.Lease : ""));
      head.appendChild(kind);
      head.appendChild(meta);
      var pre = document.createElement("pre");
      text(pre, ev.Payload);
      li.appendChild(head);
      li.appendChild(pre);
      list.insertBefore(li, list.firstChild);
      var rev = document.querySelector('[data-field="revision"]');
      if (rev && ev.Revision > parseInt(rev.textContent, 10)) text(rev, String(ev.Revision));
      var st = document.querySelector('[data-field="status"]');
      var to = { started: "running", resumed: "running", waiting: "waiting", finished: "finished", failed: "failed", cancelled: "cancelled" }[ev.Kind];
      if (st && to) text(st, to);
    };
  }

  document.addEventListener("DOMContentLoaded", function () {
    refreshStats();
    liveEvents();
  });
})();
