/* The run page: one poll refreshes the header, the failure summary, the DAG and the
   task table until the run has finished. dagre lays the DAG out left to right, we
   draw it as SVG; big sibling sets come folded (one node, counts by status) and open
   in a paged list. A search box finds a task by name, #number or status. */
(function () {
  "use strict";
  var root = document.getElementById("dw-dag");
  if (!root || typeof dagre === "undefined") { return; }
  var SVG = "http://www.w3.org/2000/svg";
  var MARK = { pending: "○", queued: "…", running: "▶", retrying: "↻", success: "✓",
               failure: "✗", upstream_failed: "⊘", canceled: "■" };
  var ORDER = ["failure", "retrying", "running", "queued", "upstream_failed", "canceled",
               "pending", "success"];
  var NODE = { w: 160, h: 30 }, FOLD = { w: 230, h: 46 };
  var BLANK_ID = "00000000-0000-0000-0000-000000000000";
  var svg = document.getElementById("dw-dag-svg");
  var canOperate = root.dataset.canOperate === "1";
  var canMarkSuccess = root.dataset.canMarkSuccess === "1";
  var data = null, shapeKey = null, drawn = {}, box = null, view = null, first = null;
  var selected = null, lastFocus = null, opened = null, finds = null, findIndex = -1;
  var table = { status: "", page: 1, loaded: false };

  function $(id) { return document.getElementById(id); }
  function el(name, attrs, parent) {
    var node = document.createElementNS(SVG, name);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (parent) { parent.appendChild(node); }
    return node;
  }
  function html(name, attrs, text, parent) {
    var node = document.createElement(name);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined && text !== null) { node.textContent = text; }
    if (parent) { parent.appendChild(node); }
    return node;
  }
  function json(url) {
    return fetch(url, { credentials: "same-origin" }).then(function (r) {
      if (!r.ok) { throw new Error(r.status); }
      return r.json();
    });
  }
  function number(n) { return n.toLocaleString("en-US"); }
  function counts(group) {
    return ORDER.filter(function (s) { return group.counts[s]; }).map(function (s) {
      return MARK[s] + " " + number(group.counts[s]);
    }).join("  ");
  }

  // -- the live panels: header and failure summary, swapped when they changed -----------

  function swap(holder, markup) {
    if (holder.dataset.markup === markup) { return; }
    var active = document.activeElement, again = null;
    if (active && holder.contains(active)) {
      again = active.dataset.op ? "[data-op='" + active.dataset.op + "']" :
        active.dataset.node ? "[data-node='" + active.dataset.node + "']" : null;
    }
    holder.innerHTML = markup;
    holder.dataset.markup = markup;
    if (again && holder.querySelector(again)) { holder.querySelector(again).focus(); }
  }

  // -- layout and drawing -------------------------------------------------------------------

  function size(n) { return n.group ? FOLD : NODE; }

  function layout(d) {
    var g = new dagre.graphlib.Graph();
    g.setGraph({ rankdir: "LR", nodesep: 10, ranksep: 36, marginx: 10, marginy: 10 });
    g.setDefaultEdgeLabel(function () { return {}; });
    d.nodes.forEach(function (n) {
      var s = size(n); g.setNode(String(n.node), { width: s.w, height: s.h });
    });
    d.edges.forEach(function (e) { g.setEdge(String(e.source), String(e.target)); });
    dagre.layout(g);
    return g;
  }

  function draw(d) {
    var g = layout(d);
    svg.textContent = "";
    var defs = el("defs", {}, svg);
    var marker = el("marker", { id: "dw-arrow", viewBox: "0 0 10 10", refX: "10", refY: "5",
      markerWidth: "6", markerHeight: "6", orient: "auto-start-reverse" }, defs);
    el("path", { d: "M 0 0 L 10 5 L 0 10 z", fill: "#999" }, marker);
    var edges = el("g", {}, svg), nodes = el("g", {}, svg);
    g.edges().forEach(function (e) {
      var points = g.edge(e).points.map(function (p) { return p.x + "," + p.y; });
      el("polyline", { "class": "dw-edge", points: points.join(" ") }, edges);
    });
    drawn = {};
    d.nodes.forEach(function (n) {
      var pos = g.node(String(n.node)), s = size(n);
      var item = el("g", { "class": "dw-node", tabindex: "0", role: "button",
        "data-id": n.id, "data-node": n.node,
        transform: "translate(" + (pos.x - s.w / 2) + "," + (pos.y - s.h / 2) + ")" }, nodes);
      el("rect", { width: s.w, height: s.h }, item);
      item.label = el("text", { x: 8, y: n.group ? 18 : 19 }, item);
      if (n.group) {
        item.classList.add("dw-fold");
        item.counts = el("text", { x: 8, y: 36, "class": "dw-counts" }, item);
      }
      item.title = el("title", {}, item);
      item.pos = pos; item.data = n;
      item.addEventListener("click", function () { activate(item); });
      item.addEventListener("keydown", function (ev) { nodeKey(ev, item); });
      item.addEventListener("focus", function () { lastFocus = item; reveal(item); });
      drawn[n.node] = item;
    });
    first = d.nodes.length ? g.node(String(d.nodes[0].node)) : null;
    var graph = g.graph();
    box = { x: 0, y: 0, w: Math.max(graph.width, 200), h: Math.max(graph.height, 60) };
    svg.style.height = Math.max(160, Math.min(420, box.h + 40)) + "px";  // no empty acres
    if (selected && drawn[selected.node]) { drawn[selected.node].classList.add("dw-selected"); }
    start();
  }

  function paint(d) {
    d.nodes.forEach(function (n) {
      var item = drawn[n.node];
      if (!item) { return; }
      item.data = n;
      item.setAttribute("data-status", n.status);
      ORDER.forEach(function (s) { item.classList.remove("dw-" + s); });
      item.classList.add("dw-" + n.status);
      var label = n.group ? n.label : (MARK[n.status] || "") + " " + n.label +
        (n.hook ? " (hook)" : "");
      item.label.textContent = label.length > 24 && !n.group ? label.slice(0, 23) + "…" : label;
      if (n.group) {
        item.counts.textContent = counts(n.group);
        item.title.textContent = n.label + " (" + (n.task || "group") + "), from #" + n.node +
          ": " + counts(n.group) + ". Enter opens the list.";
        item.setAttribute("aria-label", n.label + ": " + counts(n.group));
      } else {
        item.title.textContent = "#" + n.node + " " + n.task + ": " + n.status +
          (n.attempts > 1 ? " (" + n.attempts + " attempts)" : "");
        item.setAttribute("aria-label", "#" + n.node + " " + n.label + ": " + n.status);
      }
    });
    var p = d.progress;
    $("dw-dag-summary").textContent = d.status + " · " + number(p.finished) + "/" +
      number(p.total) + " finished" + (p.failed ? ", " + number(p.failed) + " failed" : "");
    root.setAttribute("data-status", d.status);
    if (finds) { mark(); }
  }

  // -- view: fit, pan, zoom, centre ----------------------------------------------------------

  function setView(v) { view = v; svg.setAttribute("viewBox", [v.x, v.y, v.w, v.h].join(" ")); }
  function scaled(scale) {
    // A view of the graph at ``scale`` (1: one unit per pixel), centred where it fits.
    var rect = svg.getBoundingClientRect();
    var w = rect.width / scale, h = rect.height / scale;
    return { x: box.w < w ? (box.w - w) / 2 : box.x, y: box.h < h ? (box.h - h) / 2 : box.y,
             w: w, h: h };
  }
  function fitScale() {
    var rect = svg.getBoundingClientRect();
    return Math.min(rect.width / box.w, rect.height / box.h);
  }
  function fit() { if (box) { setView(scaled(fitScale())); } }
  // First view: whole if readable, else readable from the first tasks on (pan or Fit).
  function start() {
    var v = scaled(Math.max(0.6, Math.min(1, fitScale())));
    if (box.h > v.h && first) { v.y = Math.max(box.y, first.y - v.h / 2); }
    setView(v);
  }
  function centre(item) {
    var rect = svg.getBoundingClientRect();
    var w = view.w, h = view.h;
    if (rect.width / w < 0.6) { w = rect.width; h = rect.height; }
    setView({ x: item.pos.x - w / 2, y: item.pos.y - h / 2, w: w, h: h });
  }
  function reveal(item) {
    var p = item.pos;
    if (p.x < view.x || p.x > view.x + view.w || p.y < view.y || p.y > view.y + view.h) {
      centre(item);
    }
  }

  svg.addEventListener("wheel", function (ev) {
    if (!view) { return; }
    ev.preventDefault();
    var rect = svg.getBoundingClientRect();
    var scale = ev.deltaY > 0 ? 1.15 : 1 / 1.15;
    var mx = view.x + view.w * (ev.clientX - rect.left) / rect.width;
    var my = view.y + view.h * (ev.clientY - rect.top) / rect.height;
    setView({ x: mx - (mx - view.x) * scale, y: my - (my - view.y) * scale,
              w: view.w * scale, h: view.h * scale });
  }, { passive: false });
  var drag = null;
  svg.addEventListener("mousedown", function (ev) {
    drag = { x: ev.clientX, y: ev.clientY, view: view }; svg.classList.add("dw-panning");
  });
  window.addEventListener("mouseup", function () { drag = null; svg.classList.remove("dw-panning"); });
  window.addEventListener("mousemove", function (ev) {
    if (!drag || !drag.view) { return; }
    var rect = svg.getBoundingClientRect();
    setView({ x: drag.view.x - (ev.clientX - drag.x) * drag.view.w / rect.width,
              y: drag.view.y - (ev.clientY - drag.y) * drag.view.h / rect.height,
              w: drag.view.w, h: drag.view.h });
  });
  $("dw-dag-fit").addEventListener("click", fit);

  // -- keyboard: Tab or arrows between nodes, Enter opens, Escape closes, / finds -------------

  function nodeKey(ev, item) {
    var dirs = { ArrowRight: [1, 0], ArrowLeft: [-1, 0], ArrowDown: [0, 1], ArrowUp: [0, -1] };
    if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); activate(item); return; }
    var dir = dirs[ev.key];
    if (!dir) { return; }
    ev.preventDefault();
    // The nearest node that way, favouring ones in line with this one.
    var best = null, bestScore = Infinity;
    Object.keys(drawn).forEach(function (k) {
      var other = drawn[k];
      var dx = other.pos.x - item.pos.x, dy = other.pos.y - item.pos.y;
      var along = dx * dir[0] + dy * dir[1], across = Math.abs(dx * dir[1] + dy * dir[0]);
      if (other === item || along <= 0) { return; }
      var score = along + 2 * across;
      if (score < bestScore) { best = other; bestScore = score; }
    });
    if (best) { best.focus(); }
  }
  document.addEventListener("keydown", function (ev) {
    var typing = /^(INPUT|TEXTAREA|SELECT)$/.test((ev.target || {}).tagName || "");
    if (ev.key === "/" && !typing) { ev.preventDefault(); $("dw-find-input").focus(); }
    if (ev.key === "Escape" && !typing) {
      if (!$("dw-details").hidden) { $("dw-details").hidden = true; }
      else if (!$("dw-group").hidden) { closeFold(); }
      if (lastFocus) { lastFocus.focus(); }
    }
  });

  // -- selecting: a node, a task in a fold, a task by number -----------------------------------

  function highlight(item) {
    svg.querySelectorAll(".dw-selected").forEach(function (n) { n.classList.remove("dw-selected"); });
    if (item) { item.classList.add("dw-selected"); }
  }
  function activate(item) {
    lastFocus = item;
    if (item.data.group) { openFold(item.data.node, 1, null, true); return; }
    selected = { node: item.data.node, id: item.data.id };
    highlight(item);
    details(item.data.id);
  }
  // A task by node number, drawn or folded: centred, highlighted, its details open.
  function selectNode(nodeNumber, id, fold, page) {
    var item = drawn[nodeNumber];
    if (item && !item.data.group) { centre(item); activate(item); item.focus({ preventScroll: true }); return; }
    if (fold !== undefined && fold !== null) { return showInFold(fold, page, id, nodeNumber); }
    json(root.dataset.findUrl + "?q=%23" + nodeNumber).then(function (found) {
      var m = found.matches[0];
      if (m && m.group !== null) { showInFold(m.group, m.page, m.id, m.node); }
      else if (m) { details(m.id); }
    });
  }
  function showInFold(fold, page, id, nodeNumber) {
    var item = drawn[fold];
    if (item) { centre(item); highlight(item); lastFocus = item; }
    selected = { node: nodeNumber, id: id, fold: fold };
    openFold(fold, page, id, false);
    details(id);
  }
  document.addEventListener("click", function (ev) {
    var button = ev.target.closest && ev.target.closest(".dw-select");
    if (!button) { return; }
    ev.preventDefault();
    selectNode(Number(button.dataset.node));
    root.scrollIntoView({ behavior: "auto", block: "start" });
  });

  // -- an opened fold: its members, failures first, a page at a time --------------------------

  function openFold(fold, page, highlightId, focus) {
    var url = root.dataset.groupUrl.replace(/\/0\.json$/, "/" + fold + ".json") + "?page=" + page;
    return json(url).then(function (members) {
      opened = { fold: fold, page: members.page, highlight: highlightId };
      renderFold(members);
      if (focus) { $("dw-group").focus(); }
    });
  }
  function renderFold(members) {
    var panel = $("dw-group"), item = drawn[members.group];
    panel.hidden = false;
    if (item) { highlight(item); }
    var n = item ? item.data : null;
    $("dw-group-title").textContent = (n ? n.label : "#" + members.group) +
      (n && n.task ? " — " + n.task : "");
    $("dw-group-counts").textContent = n ? counts(n.group) : "";
    var list = $("dw-group-members");
    list.textContent = "";
    list.start = members.start;
    members.nodes.forEach(function (m) {
      var li = html("li", {}, null, list);
      var b = html("button", { type: "button", "class": "dw-member dw-" + m.status,
        "data-id": m.id, "data-node": m.node },
        (MARK[m.status] || "") + " #" + m.node + " " + m.label + " · " + m.status, li);
      if (opened && m.id === opened.highlight) { b.classList.add("dw-selected"); }
      b.addEventListener("click", function () {
        list.querySelectorAll(".dw-selected").forEach(function (x) { x.classList.remove("dw-selected"); });
        b.classList.add("dw-selected");
        opened.highlight = m.id;
        selected = { node: m.node, id: m.id, fold: members.group };
        details(m.id);
      });
    });
    $("dw-group-range").textContent = number(members.start) + "–" + number(members.end) +
      " of " + number(members.size) + " (page " + members.page + "/" + members.pages + ")";
    $("dw-group-prev").disabled = members.page <= 1;
    $("dw-group-next").disabled = members.page >= members.pages;
    var chosen = list.querySelector(".dw-selected");
    if (chosen) { chosen.scrollIntoView({ block: "nearest" }); }
  }
  function closeFold() { opened = null; $("dw-group").hidden = true; }
  $("dw-group-prev").addEventListener("click", function () {
    openFold(opened.fold, opened.page - 1, opened.highlight, false);
  });
  $("dw-group-next").addEventListener("click", function () {
    openFold(opened.fold, opened.page + 1, opened.highlight, false);
  });
  $("dw-group-close").addEventListener("click", function () {
    closeFold(); if (lastFocus) { lastFocus.focus(); }
  });

  // -- find: by name, #number or status; dims what does not match ------------------------------

  var findTimer = null;
  function matchesLocally(n, q) {
    var bare = q.replace(/^#/, "");
    if (/^\d+$/.test(bare)) { return n.node === Number(bare); }
    var status = q.toLowerCase().replace(/ /g, "_");
    status = { failed: "failure", succeeded: "success" }[status] || status;
    if (MARK[status]) { return n.group ? !!n.group.counts[status] : n.status === status; }
    return n.task.toLowerCase().indexOf(q.toLowerCase()) >= 0;
  }
  function mark() {
    var q = finds.query;
    var folds = {};
    finds.groups.forEach(function (g) { folds[g] = true; });
    Object.keys(drawn).forEach(function (k) {
      var item = drawn[k], n = item.data;
      var hit = n.group ? !!folds[n.node] : matchesLocally(n, q);
      item.classList.toggle("dw-match", hit);
      item.classList.toggle("dw-dim", !hit);
    });
  }
  function clearFind() {
    finds = null; findIndex = -1; $("dw-find-status").textContent = "";
    svg.querySelectorAll(".dw-match, .dw-dim").forEach(function (n) {
      n.classList.remove("dw-match"); n.classList.remove("dw-dim");
    });
  }
  function search(then) {
    var q = $("dw-find-input").value.trim();
    if (!q) { clearFind(); return; }
    json(root.dataset.findUrl + "?q=" + encodeURIComponent(q)).then(function (found) {
      if ($("dw-find-input").value.trim() !== q) { return; }
      finds = found; findIndex = -1;
      mark();
      $("dw-find-status").textContent = found.total ?
        number(found.total) + (found.total === 1 ? " task matches" : " tasks match") +
        (found.total > found.matches.length ? " (Enter goes through the first " +
          found.matches.length + ")" : " (Enter goes through them)") : "No task matches.";
      if (then) { then(); }
    });
  }
  function next() {
    if (!finds || !finds.matches.length) { return; }
    findIndex = (findIndex + 1) % finds.matches.length;
    var m = finds.matches[findIndex];
    $("dw-find-status").textContent = (findIndex + 1) + "/" + finds.matches.length +
      (finds.total > finds.matches.length ? " of " + number(finds.total) : "") +
      ": #" + m.node + " " + m.label + " (" + m.status + ")";
    selectNode(m.node, m.id, m.group, m.page);
    $("dw-find-input").focus();
  }
  $("dw-find-input").addEventListener("input", function () {
    clearTimeout(findTimer); findTimer = setTimeout(function () { search(null); }, 250);
  });
  $("dw-find").addEventListener("submit", function (ev) {
    ev.preventDefault();
    clearTimeout(findTimer);
    var q = $("dw-find-input").value.trim();
    if (finds && finds.query === q.replace(/^#/, "").trim()) { next(); } else { search(next); }
  });

  // -- a task's details --------------------------------------------------------------------------

  // Celery's (and its libraries') frames, folded behind the task's own.
  var MACHINERY = /[\/\\](celery|kombu|billiard|vine|django_workflows)[\/\\]/;
  function traceback(text) {
    var holder = document.createElement("div");
    var own = [], machinery = 0, frame = null, rest = [];
    text.split("\n").forEach(function (line) {
      if (/^\s*File "/.test(line)) {
        frame = { lines: [line], theirs: MACHINERY.test(line) };
        if (frame.theirs) { machinery += 1; } else { own.push(frame); }
      } else if (frame && /^\s{4,}\S/.test(line)) {
        frame.lines.push(line);
      } else {
        frame = null;
        if (line.trim() && !/^Traceback \(most recent call last\)/.test(line)) { rest.push(line); }
      }
    });
    if (!machinery || !own.length) { html("pre", {}, text, holder); return holder; }
    var shown = own.map(function (f) { return f.lines.join("\n"); });
    html("pre", { "class": "dw-own-frames" },
         "Traceback, the task's own frames (most recent call last):\n" + shown.join("\n") +
         "\n" + rest.join("\n"), holder);
    var more = html("details", {}, null, holder);
    html("summary", {}, "Full traceback (" + machinery + " Celery frames)", more);
    html("pre", {}, text, more);
    return holder;
  }

  function field(list, name, value, pre) {
    if (value === null || value === undefined || value === "" ||
        (Array.isArray(value) && !value.length)) { return; }
    html("dt", {}, name, list);
    var dd = html("dd", {}, null, list);
    if (pre === "traceback") { dd.appendChild(traceback(value)); return; }
    var text = typeof value === "string" ? value : JSON.stringify(value, null, 2);
    if (pre) { html("pre", {}, text, dd); } else { dd.textContent = text; }
  }

  function details(id) {
    var url = root.dataset.taskUrl.replace(BLANK_ID, id);
    json(url).then(function (t) {
      var panel = $("dw-details");
      panel.hidden = false;
      $("dw-details-title").textContent = "#" + t.node + " " + t.task + " — " + t.status_display;
      var actions = $("dw-details-actions");
      actions.textContent = "";
      function action(op, text) {
        html("a", { href: root.dataset.operationUrl.replace("OPERATION", op) + "?task_run=" + t.id,
          "class": "button" }, text, actions);
      }
      var status = root.dataset.status;
      if (canOperate && status !== "running" && status !== "pending") {
        action("rerun", "Rerun from this task");
      }
      if (canMarkSuccess && t.status === "failure") { action("mark-success", "Mark as succeeded"); }
      Object.keys(t.links).forEach(function (k) {
        html("a", { href: t.links[k] }, k === "flower" ? "Flower" : "Task result", actions);
      });
      var list = $("dw-details-fields");
      list.textContent = "";
      field(list, "Task id", t.id);
      if (!("args" in t)) {  // task data needs the "view task run" permission
        field(list, "Arguments, result, errors", "not shown: you may not view task runs");
      }
      field(list, "Args", t.args, true);
      field(list, "Kwargs", t.kwargs, true);
      field(list, "Options", t.options && Object.keys(t.options).length ? t.options : null, true);
      field(list, "Result", t.status === "success" ? t.result : null, true);
      field(list, "Marked as succeeded by hand", t.marked_success ? "yes" : null);
      field(list, "Exception", t.exception_type ? t.exception_type + ": " +
            t.exception_message : null);
      field(list, "Traceback", t.traceback, "traceback");
      field(list, "Attempts", String(t.attempts));
      (t.history || []).forEach(function (a) {
        field(list, "Attempt " + a.attempt + " (" + a.status + ")",
              a.exception_type + ": " + a.exception_message, true);
        field(list, "Traceback of attempt " + a.attempt, a.traceback, "traceback");
      });
      field(list, "Worker", t.worker);
      field(list, "Queued", t.queued_at); field(list, "Started", t.started_at);
      field(list, "Finished", t.finished_at);
      field(list, "Duration", t.duration === null ? null : t.duration.toFixed(3) + " s");
    });
  }

  // -- the task table: filtered and paged in place ----------------------------------------------

  function loadTable() {
    var url = root.dataset.tableUrl + "?status=" + encodeURIComponent(table.status) +
      "&page=" + table.page;
    return fetch(url, { credentials: "same-origin" }).then(function (r) { return r.text(); })
      .then(function (markup) { table.loaded = true; swap($("dw-table-body"), markup); });
  }
  $("dw-table-body").addEventListener("change", function (ev) {
    if (ev.target.matches("[data-table-status]")) {
      table.status = ev.target.value; table.page = 1; loadTable();
    }
  });
  $("dw-table-body").addEventListener("click", function (ev) {
    var b = ev.target.closest("[data-table-page]");
    if (b) { table.page = Number(b.dataset.tablePage); loadTable(); }
  });

  // -- the one poll ------------------------------------------------------------------------------

  function refresh() {
    // The page came with the panels: a run finished then needs none from the poll.
    var drawnFinished = !data && root.dataset.finished === "1";
    json(root.dataset.url + (drawnFinished ? "" : "?panels=1")).then(function (d) {
      var wasFinished = data && data.finished;
      data = d;
      if (d.panels) {
        swap($("dw-header"), d.panels.header);
        swap($("dw-failures"), d.panels.failures);
      }
      var key = d.nodes.map(function (n) { return n.id; }).join(",") + ":" + d.edges.length;
      if (key !== shapeKey) { shapeKey = key; draw(d); }
      paint(d);
      if (!table.loaded || !wasFinished) { loadTable(); }
      if (opened && !d.finished) {
        openFold(opened.fold, opened.page, opened.highlight, false);
      }
      if (!d.finished) { setTimeout(refresh, 1000); }
    }).catch(function () { setTimeout(refresh, 3000); });
  }
  refresh();
})();
