// csi-hub /flow: draws the step stream (/steps?watch=true of this server and
// of the driver's node endpoints) as one story per claim or snapshot. Plain
// JavaScript, no build step; the words for each step kind come from kinds.json
// (internal/flow/kinds.go), shared with `csi-hub explain`.
"use strict";
(function () {
  const MAX_STEPS = 20000, PAGE = 50, MAX_ROWS = 300;
  const params = new URLSearchParams(location.search);
  const nodeURLs = (params.get("node") || "").split(",").map(s => s.trim()).filter(Boolean);
  const byKey = new Map();          // source:seq -> step
  let all = [];                     // every step, oldest first
  let kinds = {};
  let selectedStory = decodeURIComponent(location.hash.replace(/^#story=/, "")) || "";
  let selectedStep = null, page = 0, showRows = MAX_ROWS, dirty = true, stepsChanged = true, cached = [];
  const status = { hub: "connecting", nodes: {} };
  const $ = id => document.getElementById(id);
  const el = (tag, cls, text) => { const e = document.createElement(tag); if (cls) e.className = cls; if (text != null) e.textContent = text; return e; };

  // stepKey is kinds.go's Key: keep the two together.
  function stepKey(s) {
    if (s.kind === "event" && (s.action === "VolumeFailedDelete" || s.action === "VolumeDelete") && /attached/i.test(s.detail || "")) return "event:still-attached";
    return s.kind + ":" + s.action;
  }
  function describe(s) {
    const k = kinds[stepKey(s)];
    if (k) return k;
    const f = kinds[s.kind + ":*"] || { why: "" };
    return { label: s.kind === "write" ? "API " + s.action : s.action, why: f.why };
  }
  const isWait = s => stepKey(s) === "event:still-attached";
  function failed(s) {
    switch (s.kind) {
      case "csi": case "node": return !!s.result && s.result !== "OK";
      case "write": { const c = parseInt(s.result, 10); return isNaN(c) || c >= 300; }
      case "event": return s.result === "Warning" && !isWait(s);
    }
    return false;
  }
  // Steps nobody learns from: periodic probes, capacity publishing.
  const background = s => (s.kind === "csi" && (s.action === "Probe" || s.action === "ListVolumes" || s.action === "GetCapacity") && !failed(s)) || !s.object;

  function add(source, s) {
    const key = source + ":" + s.seq;
    if (byKey.has(key)) return;
    s.source = source;
    s.t = Date.parse(s.time);
    byKey.set(key, s);
    stepsChanged = true;
    if (all.length && all[all.length - 1].t > s.t) { // node clocks and streams interleave
      let i = all.length; while (i > 0 && all[i - 1].t > s.t) i--; all.splice(i, 0, s);
    } else all.push(s);
    if (all.length > MAX_STEPS) { const gone = all.splice(0, all.length - MAX_STEPS); gone.forEach(g => byKey.delete(g.source + ":" + g.seq)); }
    dirty = true;
  }

  function stream(source, base, onState) {
    let last = 0, es = null;
    const open = () => {
      es = new EventSource(base + "/steps?watch=true&after=" + last);
      es.onopen = () => onState("live");
      es.onmessage = ev => { const s = JSON.parse(ev.data); last = Math.max(last, s.seq); add(source, s); };
      es.onerror = () => { onState("unreachable"); es.close(); setTimeout(open, 3000); };
    };
    open();
  }

  // Stories: objects linked by a step's "related" (claim <-> PV <-> attachment
  // <-> CSI volume; snapshot <-> content), as story.go's Story does.
  function stories() {
    const parent = new Map();
    const find = x => { let r = x; while (parent.has(r) && parent.get(r) !== r) r = parent.get(r); parent.set(x, r); if (!parent.has(r)) parent.set(r, r); return r; };
    for (const s of all) {
      if (!s.object) continue;
      const a = find(s.object);
      for (const r of s.related || []) { const b = find(r); if (a !== b) parent.set(b, a); }
    }
    const out = new Map();
    for (const s of all) {
      if (!s.object) continue;
      const root = find(s.object);
      let st = out.get(root);
      if (!st) { st = { objects: new Set(), steps: [], failed: false, last: 0, bg: true }; out.set(root, st); }
      st.objects.add(s.object); st.steps.push(s); st.last = Math.max(st.last, s.t);
      st.failed = st.failed || failed(s);
      st.bg = st.bg && background(s);
    }
    for (const st of out.values()) {
      const objs = [...st.objects];
      const pick = p => objs.find(o => o.startsWith(p + " "));
      st.title = pick("PersistentVolumeClaim") || pick("VolumeSnapshot") || pick("VolumeSnapshotContent") || pick("PersistentVolume") || pick("VolumeAttachment") || objs[0];
      if (/^(CSIStorageCapacity|data source) /.test(st.title)) st.bg = true;
      st.ns = (objs.map(o => o.split(" ")[1] || "").find(n => n.includes("/")) || "").split("/")[0];
    }
    return [...out.values()].sort((a, b) => b.last - a.last);
  }

  function column(s) {
    if (s.kind === "node") return "node";
    const o = s.object || "";
    if (o.startsWith("PersistentVolumeClaim ") || o.startsWith("StorageClass ")) return "claim";
    if (o.startsWith("PersistentVolume ") || o.startsWith("CSIVolume ")) return "volume";
    if (o.startsWith("VolumeAttachment ")) return "attach";
    if (o.startsWith("VolumeSnapshot")) return "snapshot";
    return "claim";
  }
  const COLUMNS = [
    ["claim", "Claim (StorageClass, PVC)"], ["volume", "Volume (PV)"], ["attach", "Attachment (VolumeAttachment)"],
    ["node", "Node (kubelet → driver)"], ["snapshot", "Snapshot (VolumeSnapshot/Content)"]];

  function who(s) {
    if (s.kind === "node") return "kubelet → driver";
    if (s.kind === "event") return (s.result || "") + " event";
    if (s.kind === "seen") return s.controller || "kubernetes";
    return "csi-hub " + (s.controller || "");
  }
  function fmtDur(ns) { if (!ns) return ""; const ms = ns / 1e6; return ms < 1 ? ms.toFixed(2) + " ms" : ms < 1000 ? ms.toFixed(0) + " ms" : (ms / 1000).toFixed(1) + " s"; }
  function fmtTime(t) { const d = new Date(t); return d.toLocaleTimeString([], { hour12: false }) + "." + String(d.getMilliseconds()).padStart(3, "0"); }

  function card(s) {
    const d = describe(s);
    const c = el("div", "step kind-" + s.kind + (failed(s) ? " failed" : "") + (isWait(s) ? " wait" : ""));
    c.dataset.key = stepKey(s); c.dataset.id = s.source + ":" + s.seq;
    c.setAttribute("role", "listitem");
    c.appendChild(el("div", "who", who(s)));
    c.appendChild(el("div", "label", s.kind === "trigger" ? "acts: " + s.action : d.label || s.action));
    let sub = "";
    if (s.kind === "write") sub = s.detail || "";
    else if (s.kind !== "trigger") sub = s.detail || "";
    if (sub) c.appendChild(el("div", "sub", sub));
    const res = [s.kind === "seen" || s.kind === "trigger" || s.kind === "event" ? "" : s.result, fmtDur(s.durationNs)].filter(Boolean).join(" · ");
    if (res) c.appendChild(el("div", "res", res));
    if (selectedStep === c.dataset.id) c.classList.add("selected");
    c.onclick = () => { selectedStep = c.dataset.id; showDetail(s); document.querySelectorAll(".step.selected").forEach(x => x.classList.remove("selected")); c.classList.add("selected"); };
    return c;
  }

  // The node steps this page cannot see: the kubelet calls the driver directly.
  function unseen(text) { const c = el("div", "step unseen kind-node"); c.dataset.key = "unseen"; c.appendChild(el("div", "who", "kubelet → driver (not visible)")); c.appendChild(el("div", "sub", text)); return c; }

  function renderLane(list) {
    const head = $("lanehead"), lane = $("lane");
    head.textContent = ""; lane.textContent = "";
    const st = list.find(x => x.objects.has(selectedStory)) || list.find(x => !x.bg) || null;
    if (!st) { head.appendChild(el("p", "hint", "No steps yet. Create a PersistentVolumeClaim and a Pod that uses it, and watch its story appear.")); return; }
    selectedStory = st.title;
    head.appendChild(el("h2", null, st.title));
    head.appendChild(el("div", "hint", [...st.objects].sort().join(" · ")));
    const hasNode = st.steps.some(s => s.kind === "node");
    const attached = st.steps.find(s => s.kind === "seen" && s.action === "va-attached");
    const detach = st.steps.find(s => s.kind === "seen" && s.action === "va-detach-requested");
    if (attached && !hasNode) {
      const b = el("div", "banner");
      b.textContent = nodeURLs.length
        ? "No node steps for this volume from " + nodeURLs.join(", ") + " (" + Object.entries(status.nodes).map(([u, v]) => u + ": " + v).join(", ") + "): the volume may be on another node."
        : "Node steps not visible: the kubelet calls the driver's NodeStageVolume/NodePublishVolume (and NodeUnpublish/NodeUnstage/NodeExpand) on the node directly, so csi-hub never sees them. Open this page with ?node=http://<driver's node pod>:9810 to include them.";
      head.appendChild(b);
    }
    let steps = st.steps;
    const cols = COLUMNS.filter(([id]) => id === "claim" || steps.some(s => column(s) === id) || (id === "node" && attached));
    if (steps.length > showRows) {
      const more = el("button", "more", "show " + (steps.length - showRows) + " earlier steps");
      more.onclick = () => { showRows += MAX_ROWS; dirty = true; };
      head.appendChild(more);
      steps = steps.slice(steps.length - showRows);
    }
    const grid = el("div", "grid");
    grid.style.gridTemplateColumns = "90px repeat(" + cols.length + ", minmax(150px, 1fr))";
    grid.appendChild(el("div", "colhead", "time"));
    cols.forEach(([, title]) => grid.appendChild(el("div", "colhead", title)));
    const row = (t, colId, content) => {
      grid.appendChild(el("div", "time", t ? fmtTime(t) : ""));
      cols.forEach(([id]) => { const c = el("div", "cell"); if (id === colId) c.appendChild(content); grid.appendChild(c); });
    };
    for (const s of steps) {
      row(s.t, column(s), card(s));
      if (!hasNode && !nodeURLs.length && s === attached) row(0, "node", unseen("NodeStageVolume, then NodePublishVolume: the kubelet mounts the volume for the Pod (not visible here)"));
      if (!hasNode && !nodeURLs.length && s === detach) row(0, "node", unseen("before this: NodeUnpublishVolume, then NodeUnstageVolume as the Pod went away (not visible here)"));
    }
    lane.appendChild(grid);
  }

  function renderList(list) {
    const q = $("filter").value.trim().toLowerCase(), ns = $("namespace").value, bg = $("background").checked;
    const nsSel = $("namespace"), known = new Set([...nsSel.options].map(o => o.value));
    list.forEach(st => { if (st.ns && !known.has(st.ns)) { known.add(st.ns); nsSel.appendChild(new Option(st.ns, st.ns)); } });
    const shown = list.filter(st => (bg || !st.bg) && (!ns || st.ns === ns) && (!q || [...st.objects].some(o => o.toLowerCase().includes(q))));
    const pages = Math.max(1, Math.ceil(shown.length / PAGE));
    page = Math.min(page, pages - 1);
    $("page").textContent = shown.length + " stories · page " + (page + 1) + "/" + pages;
    const ol = $("storylist"); ol.textContent = "";
    for (const st of shown.slice(page * PAGE, page * PAGE + PAGE)) {
      const li = el("li", (st.failed ? "failed " : "") + (st.objects.has(selectedStory) ? "selected" : ""));
      li.dataset.story = st.title;
      li.appendChild(el("div", "title", st.title));
      li.appendChild(el("div", "meta", st.steps.length + " steps · last " + fmtTime(st.last)));
      li.onclick = () => { selectedStory = st.title; showRows = MAX_ROWS; location.hash = "story=" + encodeURIComponent(st.title); dirty = true; };
      ol.appendChild(li);
    }
  }

  function pretty(text) {
    if (!text) return "";
    try { return JSON.stringify(JSON.parse(text), null, 2); } catch (e) { return text; }
  }
  // The object's state at step s: the last state csi-hub saw of the step's
  // object (or, for a node step, of its PV) at or before s.
  function stateAt(s) {
    const objs = new Set([s.object]);
    if (s.kind === "node" || (s.object || "").startsWith("CSIVolume ")) all.forEach(x => { if ((x.related || []).includes(s.object)) objs.add(x.object); });
    let found = null;
    for (const x of all) { if (x.t > s.t) break; if (x.state && objs.has(x.object)) found = x; }
    return found;
  }

  function showDetail(s) {
    const d = describe(s), a = $("detail");
    a.textContent = "";
    a.appendChild(el("h3", null, s.kind === "trigger" ? "A controller acts" : d.label || s.action));
    const dl = el("dl");
    const kv = (k, v) => { if (!v) return; dl.appendChild(el("dt", null, k)); dl.appendChild(el("dd", null, v)); };
    kv("who", who(s)); kv("object", s.object); kv("time", new Date(s.t).toISOString()); kv("result", s.result); kv("took", fmtDur(s.durationNs));
    kv("step", s.kind + " #" + s.seq + (s.source !== "hub" ? " (" + s.source + ")" : ""));
    a.appendChild(dl);
    if (s.kind === "trigger") a.appendChild(el("p", null, s.action));
    if (isWait(s)) a.appendChild(el("p", "waittext", s.detail));
    else if (failed(s)) a.appendChild(el("p", "failtext", s.detail || s.result));
    else if (s.detail) a.appendChild(el("p", null, s.detail));
    a.appendChild(el("h4", null, "What just happened, and why"));
    a.appendChild(el("p", "why", d.why || ""));
    if (s.request) { a.appendChild(el("h4", null, "Request (secrets stripped)")); a.appendChild(el("pre", "request", pretty(s.request))); }
    if (s.response) { a.appendChild(el("h4", null, "Response")); a.appendChild(el("pre", "response", pretty(s.response))); }
    const st = stateAt(s);
    if (st) { a.appendChild(el("h4", null, "State of " + st.object + " at that moment")); a.appendChild(el("pre", "state", JSON.stringify(st.state, null, 2))); }
    else a.appendChild(el("p", "hint", "csi-hub saw no change of this object up to this step, so it has no state to show."));
  }

  function showStatus() {
    const n = Object.entries(status.nodes);
    const txt = "hub: " + status.hub + (n.length ? " · " + n.map(([u, v]) => "node " + u + ": " + v).join(" · ") : " · node steps: none (?node=…)") + " · " + all.length + " steps";
    const e = $("status"); e.textContent = txt; e.className = "status" + (/unreachable/.test(txt) ? " bad" : "");
  }

  function render() {
    if (dirty) {
      dirty = false;
      const t0 = performance.now();
      if (stepsChanged) { cached = stories(); stepsChanged = false; }
      const list = cached;
      renderList(list);
      const lane = $("lane"), top = lane.parentElement.scrollTop;
      renderLane(list);
      lane.parentElement.scrollTop = top;
      window.__flowRenderMs = performance.now() - t0; // read by tests measuring big clusters
    }
    showStatus();
  }

  ["filter", "namespace", "background"].forEach(id => $(id).addEventListener("input", () => { page = 0; dirty = true; }));
  $("prev").onclick = () => { page = Math.max(0, page - 1); dirty = true; };
  $("next").onclick = () => { page++; dirty = true; };
  window.addEventListener("hashchange", () => { selectedStory = decodeURIComponent(location.hash.replace(/^#story=/, "")); dirty = true; });

  // The words first, so the first drawing already has them.
  fetch("kinds.json").then(r => r.json()).then(k => { kinds = k; }).catch(() => {}).finally(() => {
    dirty = true;
    stream("hub", "..", v => { status.hub = v; });
    nodeURLs.forEach((u, i) => { status.nodes[u] = "connecting"; stream("node" + (i + 1), u.replace(/\/+$/, "").replace(/\/steps$/, ""), v => { status.nodes[u] = v; dirty = true; }); });
  });
  // Re-render at most every 300 ms, and less often when a render is slow (a
  // big cluster), so the browser stays responsive while steps pour in.
  (function loop() { render(); setTimeout(loop, Math.max(300, 5 * (window.__flowRenderMs || 0))); })();
})();
