/* The run page's DAG: dagre lays it out left to right, we draw it as SVG.
   Refreshes itself from the run's JSON until the run has finished. */
(function () {
  "use strict";
  var root = document.getElementById("dw-dag");
  if (!root || typeof dagre === "undefined") { return; }
  var SVG = "http://www.w3.org/2000/svg";
  var MARK = { pending: "○", queued: "…", running: "▶", retrying: "↻", success: "✓",
               failure: "✗", upstream_failed: "⊘", canceled: "■" };
  var svg = document.getElementById("dw-dag-svg");
  var summary = document.getElementById("dw-dag-summary");
  var canOperate = root.dataset.canOperate === "1";
  var canMarkSuccess = root.dataset.canMarkSuccess === "1";
  var shapeKey = null, groups = {}, box = null, view = null, selected = null, first = null;

  function el(name, attrs, parent) {
    var node = document.createElementNS(SVG, name);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (parent) { parent.appendChild(node); }
    return node;
  }

  function layout(data) {
    var g = new dagre.graphlib.Graph();
    g.setGraph({ rankdir: "LR", nodesep: 10, ranksep: 36, marginx: 10, marginy: 10 });
    g.setDefaultEdgeLabel(function () { return {}; });
    data.nodes.forEach(function (n) { g.setNode(String(n.node), { width: 160, height: 30 }); });
    data.edges.forEach(function (e) { g.setEdge(String(e.source), String(e.target)); });
    dagre.layout(g);
    return g;
  }

  function draw(data) {
    var g = layout(data);
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
    groups = {};
    data.nodes.forEach(function (n) {
      var pos = g.node(String(n.node));
      var group = el("g", { "class": "dw-node", tabindex: "0", "data-id": n.id,
        transform: "translate(" + (pos.x - 80) + "," + (pos.y - 15) + ")" }, nodes);
      el("rect", { width: 160, height: 30 }, group);
      group.label = el("text", { x: 8, y: 19 }, group);
      group.title = el("title", {}, group);
      group.addEventListener("click", function () { details(n.id, group); });
      group.addEventListener("keydown", function (ev) {
        if (ev.key === "Enter") { details(n.id, group); }
      });
      groups[n.id] = group;
    });
    first = data.nodes.length ? g.node(String(data.nodes[0].node)) : null;
    var graph = g.graph();
    box = { x: 0, y: 0, w: Math.max(graph.width, 200), h: Math.max(graph.height, 60) };
    start();
  }

  function paint(data) {
    data.nodes.forEach(function (n) {
      var group = groups[n.id];
      if (!group) { return; }
      var selectedClass = group === selected ? " dw-selected" : "";
      group.setAttribute("class", "dw-node dw-" + n.status + selectedClass);
      group.setAttribute("data-status", n.status);
      var label = (MARK[n.status] || "") + " " + n.label + (n.hook ? " (hook)" : "");
      group.label.textContent = label.length > 24 ? label.slice(0, 23) + "…" : label;
      group.title.textContent = "#" + n.node + " " + n.task + ": " + n.status +
        (n.attempts > 1 ? " (" + n.attempts + " attempts)" : "");
    });
    var p = data.progress;
    summary.textContent = data.status + " · " + p.finished + "/" + p.total + " finished" +
      (p.failed ? ", " + p.failed + " failed" : "");
    root.setAttribute("data-status", data.status);
  }

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
  // The whole graph, however small that makes it.
  function fit() { if (box) { setView(scaled(fitScale())); } }
  // First view: whole if readable, else readable from the first tasks on (pan or Fit).
  function start() {
    var v = scaled(Math.max(0.6, Math.min(1, fitScale())));
    if (box.h > v.h && first) { v.y = Math.max(box.y, first.y - v.h / 2); }
    setView(v);
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
  document.getElementById("dw-dag-fit").addEventListener("click", fit);

  function field(list, name, value, pre) {
    if (value === null || value === undefined || value === "" ||
        (Array.isArray(value) && !value.length)) { return; }
    var dt = document.createElement("dt"); dt.textContent = name; list.appendChild(dt);
    var dd = document.createElement("dd"); list.appendChild(dd);
    var holder = pre ? document.createElement("pre") : dd;
    holder.textContent = typeof value === "string" ? value : JSON.stringify(value, null, 2);
    if (pre) { dd.appendChild(holder); }
  }

  function details(id, group) {
    if (selected) { selected.classList.remove("dw-selected"); }
    selected = group; group.classList.add("dw-selected");
    var url = root.dataset.taskUrl.replace("00000000-0000-0000-0000-000000000000", id);
    fetch(url, { credentials: "same-origin" }).then(function (r) { return r.json(); })
      .then(function (t) {
        var panel = document.getElementById("dw-details");
        panel.hidden = false;
        document.getElementById("dw-details-title").textContent =
          "#" + t.node + " " + t.task + " — " + t.status_display;
        var actions = document.getElementById("dw-details-actions");
        actions.textContent = "";
        function action(op, text) {
          var a = document.createElement("a");
          a.href = root.dataset.operationUrl.replace("OPERATION", op) + "?task_run=" + t.id;
          a.textContent = text; a.className = "button"; actions.appendChild(a);
        }
        if (canOperate && root.dataset.status !== "running" && root.dataset.status !== "pending") {
          action("rerun", "Rerun from this task");
        }
        if (canMarkSuccess && t.status === "failure") { action("mark-success", "Mark as succeeded"); }
        Object.keys(t.links).forEach(function (k) {
          var a = document.createElement("a"); a.href = t.links[k];
          a.textContent = k === "flower" ? "Flower" : "Task result"; actions.appendChild(a);
        });
        var list = document.getElementById("dw-details-fields");
        list.textContent = "";
        field(list, "Task id", t.id);
        if (!("args" in t)) {  // task data needs the "view task run" permission
          field(list, "Arguments, result, errors", "not shown: you may not view task runs");
        }
        field(list, "Args", t.args, true);
        field(list, "Kwargs", t.kwargs, true);
        field(list, "Options", Object.keys(t.options).length ? t.options : null, true);
        field(list, "Result", t.status === "success" ? t.result : null, true);
        field(list, "Marked as succeeded by hand", t.marked_success ? "yes" : null);
        field(list, "Exception", t.exception_type ? t.exception_type + ": " +
              t.exception_message : null);
        field(list, "Traceback", t.traceback, true);
        field(list, "Attempts", String(t.attempts));
        (t.history || []).forEach(function (a) {
          field(list, "Attempt " + a.attempt + " (" + a.status + ")",
                a.exception_type + ": " + a.exception_message + "\n" + a.traceback, true);
        });
        field(list, "Worker", t.worker);
        field(list, "Queued", t.queued_at); field(list, "Started", t.started_at);
        field(list, "Finished", t.finished_at);
        field(list, "Duration", t.duration === null ? null : t.duration.toFixed(3) + " s");
      });
  }

  function refresh() {
    fetch(root.dataset.url, { credentials: "same-origin" })
      .then(function (r) { return r.json(); })
      .then(function (data) {
        var key = data.nodes.length + ":" + data.edges.length;
        if (key !== shapeKey) { shapeKey = key; draw(data); }
        paint(data);
        if (!data.finished) { setTimeout(refresh, 1000); }
      })
      .catch(function () { setTimeout(refresh, 3000); });
  }
  refresh();
})();
