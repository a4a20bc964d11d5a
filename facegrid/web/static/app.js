// facegrid web: the little JavaScript the pages need. Everything works from this server only.
"use strict";
(function () {
  var csrf = document.querySelector('meta[name="csrf-token"]').content;

  function text(tag, value, cls) {
    var el = document.createElement(tag);
    el.textContent = value === null || value === undefined ? "" : String(value);
    if (cls) { el.className = cls; }
    return el;
  }

  function getJSON(url) {
    return fetch(url, {headers: {"Accept": "application/json"}, credentials: "same-origin"}).then(function (r) {
      return r.json().then(function (body) { if (!r.ok && !body.error) { body.error = "HTTP " + r.status; } return body; });
    });
  }

  // Search: drop or pick photos; the form posts them as field "target".
  function searchForm() {
    var drop = document.getElementById("drop"), input = document.getElementById("target");
    if (!drop || !input) { return; }
    var form = document.getElementById("search-form"), picked = document.getElementById("picked");
    function show() {
      var names = Array.prototype.map.call(input.files, function (f) { return f.name; });
      picked.textContent = names.length ? names.length + " photo(s): " + names.join(", ") : "";
    }
    input.addEventListener("change", function () { show(); if (input.files.length) { form.requestSubmit(); } });
    ["dragenter", "dragover"].forEach(function (ev) {
      drop.addEventListener(ev, function (e) { e.preventDefault(); drop.classList.add("over"); });
    });
    ["dragleave", "drop"].forEach(function (ev) {
      drop.addEventListener(ev, function (e) { e.preventDefault(); drop.classList.remove("over"); });
    });
    drop.addEventListener("drop", function (e) {
      if (!e.dataTransfer || !e.dataTransfer.files.length) { return; }
      input.files = e.dataTransfer.files;
      show();
      form.requestSubmit();
    });
    form.addEventListener("submit", function () {
      var b = document.getElementById("search-button");
      b.disabled = true;
      b.textContent = "Searching…";
    });
  }

  // Results: the confidence filter hides and shows cards by their word.
  function confidenceFilter() {
    var box = document.getElementById("filter");
    if (!box) { return; }
    function apply() {
      var on = {};
      box.querySelectorAll("input").forEach(function (i) { on[i.value] = i.checked; });
      var shown = 0, cards = document.querySelectorAll("#matches .card");
      cards.forEach(function (c) { c.hidden = !on[c.dataset.confidence]; if (!c.hidden) { shown += 1; } });
      var none = document.getElementById("all-hidden");
      if (none) { none.hidden = shown > 0 || cards.length === 0; }
    }
    box.addEventListener("change", apply);
    apply();
  }

  // Status: /api/status every 2 s, drawn as scripts/status draws it.
  function duration(s) {
    if (s === null || s === undefined) { return "unknown (nothing is being finished)"; }
    s = Math.round(s);
    if (s < 60) { return s + "s"; }
    var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
    return h ? h + "h" + String(m).padStart(2, "0") + "m" : m + "m" + String(s % 60).padStart(2, "0") + "s";
  }
  function rate(v) { return v === null || v === undefined ? "-" : v.toFixed(1); }
  function table(head, rows, numeric) {
    var t = document.createElement("table"), tr = document.createElement("tr");
    t.className = "list";
    head.forEach(function (h, i) { var th = text("th", h); if (numeric && numeric[i]) { th.className = "num"; } tr.appendChild(th); });
    t.appendChild(tr);
    rows.forEach(function (row) {
      var r = document.createElement("tr");
      row.forEach(function (v, i) { var td = text("td", v); if (numeric && numeric[i]) { td.className = "num"; } r.appendChild(td); });
      t.appendChild(r);
    });
    return t;
  }
  function drawStatus(el, s) {
    el.textContent = "";
    var head = text("p", "", "sub"), dot = text("span", "", "live" + (s.error ? " off" : ""));
    head.appendChild(dot);
    head.appendChild(document.createTextNode("beanstalkd " + s.beanstalkd + " · " + new Date(s.time * 1000).toLocaleTimeString()));
    el.appendChild(head);
    if (s.error) {
      el.appendChild(text("p", s.error, "message"));
    } else {
      var rows = Object.keys(s.tubes).map(function (name) {
        var t = s.tubes[name];
        return [name, t.ready, t.reserved, t.delayed, t.buried, t.watching, rate(t.in_per_s), rate(t.out_per_s)];
      });
      var numeric = [false, true, true, true, true, true, true, true];
      el.appendChild(table(["tube", "ready", "reserved", "delayed", "buried", "watching", "in/s", "out/s"], rows, numeric));
      el.appendChild(text("p", "rates over the last " + Math.round(s.rate_window_s) + " s; watching = filter workers (images), collectors (people)", "sub"));
      el.appendChild(text("p", "ETA to drain the queued photos: " + duration(s.eta_s), "eta"));
      if (s.max_job_size) { el.appendChild(text("p", "max-job-size " + s.max_job_size + " bytes", "sub")); }
    }
    var dbs = (s.dbs || []).map(function (d) {
      var c = d.counts;
      if (!c) { return [d.database, "not there yet", "", "", "", ""]; }
      return [d.database, c.images - (c.frames || 0), c.videos || 0, c.faces, c.ok || 0, c.error || 0];
    });
    el.appendChild(table(["database", "photos", "videos", "faces", "ok", "errors"], dbs, [false, true, true, true, true, true]));
    var buried = s.buried_jobs || [];
    if (buried.length) {
      el.appendChild(text("h2", buried.length + " buried job(s)"));
      el.appendChild(table(["job", "tube", "path", "reason"], buried.map(function (j) { return [j.id, j.tube, j.path, j.reason]; })));
    }
  }
  function statusPage() {
    var el = document.getElementById("status");
    if (!el) { return; }
    function tick() {
      getJSON("/api/status").then(function (s) { drawStatus(el, s); }, function () {
        el.insertBefore(text("p", "the server does not answer; retrying", "message"), el.firstChild);
      }).then(function () { setTimeout(tick, 2000); });
    }
    tick();
  }

  // Alerts: /api/alerts?after=OFFSET every 2 s; new ones go on top of the table.
  function alertsPage() {
    var body = document.getElementById("alerts-body");
    if (!body) { return; }
    var after = body.dataset.after || "0", dot = document.getElementById("alerts-live");
    function row(a) {
      var tr = document.createElement("tr"), face = document.createElement("td");
      tr.className = "fresh alert";
      var when = a.stored_at ? new Date(a.stored_at * 1000).toLocaleString() : "";
      tr.appendChild(text("td", when));
      var pic = document.createElement("td"), img = document.createElement("img");
      img.className = "best";
      img.alt = "";
      var photo = encodeURIComponent(a.photo || "");
      img.src = Number.isInteger(a.face) ? "/faces/" + photo + "/" + a.face + ".jpg" : "/photos/" + photo + "/thumb.jpg";
      pic.appendChild(img);
      tr.appendChild(pic);
      [a.name || ("person " + a.person), a.confidence, a.distance === undefined ? "" : Number(a.distance).toFixed(3)]
        .forEach(function (v) { tr.appendChild(text("td", v)); });
      var link = document.createElement("a");
      link.href = "/photos/" + encodeURIComponent(a.photo || "");
      link.textContent = a.path || a.photo || "";
      link.className = "path";
      face.appendChild(link);
      tr.appendChild(face);
      tr.appendChild(text("td", a.host));
      return tr;
    }
    function tick() {
      getJSON("/api/alerts?after=" + encodeURIComponent(after)).then(function (r) {
        if (r.error) { throw new Error(r.error); }
        after = String(r.next);
        (r.alerts || []).forEach(function (a) { body.insertBefore(row(a), body.firstChild); });
        var none = document.getElementById("no-alerts");
        if (none && body.children.length) { none.hidden = true; }
        if (dot) { dot.className = "live"; }
      }).catch(function () { if (dot) { dot.className = "live off"; } }).then(function () { setTimeout(tick, 2000); });
    }
    tick();
  }

  document.addEventListener("DOMContentLoaded", function () {
    searchForm();
    confidenceFilter();
    statusPage();
    alertsPage();
    void csrf;
  });
})();
