// hacluster dashboard: renders the snapshots the server pushes (a WebSocket) and sends the controls.
// Plain JS and SVG, no library. Every text goes in through textContent, never as HTML.
"use strict";

const COLORS = {
  role: { leader: "#1f9d55", follower: "#2f6fde", candidate: "#e0a000", down: "#d33a32", paused: "#7c4dcc",
          "no answer": "#7a8492" },
  link: { healthy: "#8fa3b8", slow: "#e0a000", "one-way": "#e8742a", cut: "#d33a32", down: "#c9d0da" },
  answer: { ok: "#1f9d55", "503": "#e0a000", "504": "#d33a32", other: "#7a8492" },
  pod: { Running: "#1f9d55", Completed: "#5b7fa6", Pending: "#e0a000", ContainerCreating: "#2f6fde",
         Terminating: "#7c4dcc", Unknown: "#7a8492" },
  podFailing: "#d33a32",
  node: { Ready: "#1f9d55", NotReady: "#d33a32", Unknown: "#7a8492" },
  step: { done: "#1f9d55", failed: "#d33a32", waiting: "#aab4c0" },
  timeline: { leader: "#1f9d55", election: "#e0a000", master: "#7c4dcc", fault: "#d33a32", heal: "#2f6fde",
              pod: "#5b7fa6" },
};
// One meaning per colour: green healthy / done, blue working normally, amber transitional or degraded,
// red failed, purple stopped or stopping, grey unknown.
const SVGNS = "http://www.w3.org/2000/svg";
const boot = JSON.parse(document.getElementById("boot").textContent);
const params = new URLSearchParams(location.search);
const token = params.get("token") || sessionStorage.getItem("hacluster-dashboard-token") || "";
if (params.get("token")) {
  sessionStorage.setItem("hacluster-dashboard-token", token);
  history.replaceState(null, "", location.pathname);  // keep the token out of the address bar and screenshots
}
let state = boot.snapshot;
let podView = { status: "", offset: 0, limit: 25, version: -1, shownAt: 0 };
let flowPod = null;

// ------------------------------------------------------------------------------------------ helpers
function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "style") Object.assign(e.style, v); else if (k === "class") e.className = v; else e.setAttribute(k, v);
  }
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}
function svg(tag, attrs, text) {
  const e = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}
function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); return node; }
function dash(v) { return v === null || v === undefined ? "–" : String(v); }
function roleColor(role) { return COLORS.role[role] || COLORS.role["no answer"]; }
function podColor(word) {
  if (COLORS.pod[word]) return COLORS.pod[word];
  return COLORS.podFailing;  // Error, CrashLoopBackOff, ErrImagePull, ImagePullBackOff, OOMKilled, Evicted, …
}
function bytes(n) {
  if (n === null || n === undefined) return "";
  if (n < 1024) return n + " B";
  if (n < 1048576) return (n / 1024).toFixed(1) + " KiB";
  return (n / 1048576).toFixed(1) + " MiB";
}
function ago(t, now) {
  const s = Math.max(0, now - t);
  if (s < 60) return s.toFixed(1) + " s";
  if (s < 3600) return Math.floor(s / 60) + " min";
  return Math.floor(s / 3600) + " h";
}
async function call(method, path, body) {
  const resp = await fetch(path, { method, headers: { "Authorization": "Bearer " + token,
    "Content-Type": "application/json" }, body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin" });
  let data = null;
  try { data = await resp.json(); } catch (e) { data = { message: resp.statusText }; }
  return { ok: resp.ok, code: resp.status, data };
}

// ------------------------------------------------------------------------------------------- legend
function legend() {
  const box = clear(document.getElementById("legend"));
  const group = (title, entries, kind) => {
    box.appendChild(el("span", { class: "group" }, title));
    for (const [name, color] of entries) {
      const item = el("span", { class: "item" });
      item.appendChild(el("span", kind === "line" ? { class: "ln", style: { borderColor: color,
        borderTopStyle: name === "healthy" ? "solid" : "dashed" } } : { class: "sw", style: { background: color } }));
      item.appendChild(document.createTextNode(name));
      box.appendChild(item);
    }
  };
  group("master", Object.entries(COLORS.role));
  group("Raft link", Object.entries(COLORS.link).map(([k, v]) => [k === "down" ? "end down" : k, v]), "line");
  group("write answers", ["ok", "503", "504", "other"].map(k => [k, COLORS.answer[k]]));
  group("pods", [["Running", COLORS.pod.Running], ["Completed", COLORS.pod.Completed], ["Pending", COLORS.pod.Pending],
    ["ContainerCreating", COLORS.pod.ContainerCreating], ["Terminating", COLORS.pod.Terminating],
    ["failing (Error, BackOff, OOMKilled, Evicted)", COLORS.podFailing], ["Unknown", COLORS.pod.Unknown]]);
}

// ------------------------------------------------------------------------------------------ header
function header() {
  document.getElementById("cluster-name").textContent = state.cluster || "";
  // A store engine that loses acknowledged writes by design (the split-brain experiment's) is marked UNSAFE.
  const unsafe = document.getElementById("unsafe");
  unsafe.hidden = !(state.store && state.store.unsafe);
  unsafe.title = unsafe.hidden ? "" : `store engine ${state.store.engine}: loses acknowledged writes in a partition`;
  const box = clear(document.getElementById("summary"));
  const leader = state.leader;
  const add = (label, value, color) => {
    const s = el("span");
    s.appendChild(document.createTextNode(label + " "));
    const b = el("b", color ? { style: { color } } : {}, value);
    s.appendChild(b);
    box.appendChild(s);
  };
  add("leader", leader || "none", leader ? "#6ee7a0" : "#ff8a80");
  add("term", dash(state.max_term));
  add("masters", state.masters.filter(m => ["leader", "follower", "candidate"].includes(m.role)).length + "/" +
    state.masters.length + " up");
  add("pods", state.pods.total);
  add("nodes", state.nodes.total);
  add("network", state.chaos ? "Toxiproxy" : "direct");
}

// ------------------------------------------------------------------------------------ masters graph
function graph() {
  const g = clear(document.getElementById("graph"));
  const n = state.masters.length, cx = 260, cy = n > 3 ? 228 : 215, r = n > 1 ? (n > 3 ? 120 : 118) : 0;
  const pos = {};
  state.masters.forEach((m, i) => {
    const a = -Math.PI / 2 + (2 * Math.PI * i) / n;
    pos[m.id] = [cx + r * Math.cos(a), cy + r * Math.sin(a)];
  });
  for (const l of state.links) {
    const [x1, y1] = pos[l.a] || [0, 0], [x2, y2] = pos[l.b] || [0, 0];
    const st = l.end_down ? "down" : l.state;
    const color = COLORS.link[st] || COLORS.link.cut;
    const line = svg("line", { x1, y1, x2, y2, stroke: color, "stroke-width": st === "healthy" ? 3 : 4,
      "stroke-dasharray": st === "healthy" ? "" : st === "slow" ? "10 5" : "4 6", "stroke-linecap": "round" });
    line.appendChild(svg("title", {}, `${l.a}–${l.b}: ${l.state}${l.why ? " (" + l.why + ")" : ""}`));
    g.appendChild(line);
    if (st !== "healthy") {
      const mx = (x1 + x2) / 2, my = (y1 + y2) / 2;
      const label = st === "cut" ? "✕ cut" : st === "slow" ? (l.why || "slow") : st === "one-way" ? "one way" : "";
      if (label) {
        const w = 14 + label.length * 7.6;
        g.appendChild(svg("rect", { x: mx - w / 2, y: my - 10, width: w, height: 19, rx: 9, fill: "#fff",
          stroke: color }));
        g.appendChild(svg("text", { x: mx, y: my + 4, "text-anchor": "middle", "font-size": 12, fill: color,
          "font-weight": 600 }, label));
      }
    }
  }
  for (const m of state.masters) {
    const [x, y] = pos[m.id];
    const color = roleColor(m.role);
    if (m.role === "leader") g.appendChild(svg("circle", { cx: x, cy: y, r: 41, fill: "none", stroke: color,
      "stroke-width": 3, "stroke-opacity": .35 }));
    g.appendChild(svg("circle", { cx: x, cy: y, r: 35, fill: color, stroke: "#fff", "stroke-width": 3 }));
    g.appendChild(svg("text", { x, y: y - 3, "text-anchor": "middle", "font-size": 18, "font-weight": 700,
      fill: "#fff" }, m.id));
    g.appendChild(svg("text", { x, y: y + 14, "text-anchor": "middle", "font-size": 12, fill: "#fff" }, m.role));
    const lines = m.term === null ? [[m.role === "down" ? "process not running" : m.role === "paused" ?
      "stopped (SIGSTOP)" : "", "#5b6675"]] : [
      [`term ${m.term}`, "#1c2430"],
      [`commit ${dash(m.commit_index)} · applied ${dash(m.applied_index)}`, "#1c2430"],
      [`journal ${dash(m.log_length)}${m.journal_bytes !== null ? " · " + bytes(m.journal_bytes) : ""}`, "#5b6675"]];
    const above = y < cy - 10;  // labels away from the links: above the upper masters, below the others
    const y0 = above ? y - 48 - 15 * (lines.length - 1) : y + 56;
    lines.forEach(([text, fill], k) => g.appendChild(svg("text", { x, y: y0 + k * 15, "text-anchor": "middle",
      "font-size": 12, fill, "font-weight": k === 0 ? 600 : 400 }, text)));
  }
}

// ------------------------------------------------------------------------------------ masters table
function answerBar(w) {
  const total = Object.values(w).reduce((a, b) => a + b, 0);
  const bar = el("span", { class: "bar", title: "share of write answers" });
  for (const k of ["ok", "503", "504", "other"]) {
    if (total > 0 && w[k] > 0) bar.appendChild(el("span", { style: { width: (100 * w[k] / total) + "%",
      background: COLORS.answer[k] } }));
  }
  return bar;
}
function sparkline(values) {
  // writes/s over the last minute (one point a second), on the scale of its own maximum
  const W = 60, H = 14, box = svg("svg", { width: W, height: H, class: "spark", viewBox: `0 0 ${W} ${H}` });
  const max = Math.max(1, ...values);
  const pts = values.map((v, i) => `${(W * (i + 60 - values.length) / 59).toFixed(1)},${(H - 1 - (H - 2) * v / max).toFixed(1)}`);
  if (pts.length > 1) box.appendChild(svg("polyline", { points: pts.join(" "), fill: "none", stroke: "#5b6675",
    "stroke-width": 1.2 }));
  box.appendChild(svg("title", {}, `writes/s over the last minute, peak ${max}`));
  return box;
}
function masterTable() {
  const body = clear(document.querySelector("#master-table tbody"));
  for (const m of state.masters) {
    const tr = el("tr", { "data-master": m.id, "data-role": m.role });
    tr.appendChild(el("td", {}, m.id));
    const roleTd = el("td");
    roleTd.appendChild(el("span", { class: "badge role", style: { background: roleColor(m.role) } }, m.role));
    tr.appendChild(roleTd);
    for (const v of [m.term, m.leader, m.commit_index, m.applied_index]) tr.appendChild(el("td", { class: "num" }, dash(v)));
    tr.appendChild(el("td", { class: "num" }, m.log_length === null ? "–" : m.log_length + (m.journal_bytes !== null ?
      " · " + bytes(m.journal_bytes) : "")));
    const w = m.writes || { ok: 0, "503": 0, "504": 0, other: 0 };
    const wt = el("td", { class: "num" });
    wt.appendChild(sparkline(m.writes_history || []));
    wt.appendChild(answerBar(w));
    wt.appendChild(document.createTextNode(`${w.ok} · ${w["503"]} · ${w["504"]}` +
      (w.other > 0 ? ` (+${w.other} other)` : "")));
    tr.appendChild(wt);
    const act = el("td", { class: "actions" });
    for (const [action, label] of [["kill", "kill"], ["restart", "restart"], ["pause", "pause"], ["resume", "resume"],
                                   ["isolate", "isolate"]]) {
      const b = el("button", { class: "small" + (["kill", "pause", "isolate"].includes(action) ? " danger" : ""),
        "data-action": action, "data-target": m.id }, label);
      if (!boot.controls || (action === "isolate" && !state.chaos)) b.disabled = true;
      act.appendChild(b);
    }
    tr.appendChild(act);
    body.appendChild(tr);
  }
}

// ----------------------------------------------------------------------------------------- timeline
function timeline() {
  const now = state.now || Date.now() / 1000;
  const list = clear(document.getElementById("timeline-list"));
  const items = state.timeline.slice().reverse();
  for (const t of items.slice(0, 80)) {
    const li = el("li", { "data-kind": t.kind });
    li.appendChild(el("span", { class: "ago" }, ago(t.t, now)));
    li.appendChild(el("span", { class: "dot", style: { background: COLORS.timeline[t.kind] || "#7a8492" } }));
    li.appendChild(el("span", {}, t.text));
    list.appendChild(li);
  }
  if (!items.length) list.appendChild(el("li", {}, "nothing yet: start a fault or create a pod"));
  const strip = clear(document.getElementById("timeline-strip"));
  const span = 120, W = 600;
  for (let s = 0; s <= span; s += 30) {
    const x = W - (s / span) * W;
    strip.appendChild(svg("line", { x1: x, y1: 0, x2: x, y2: 70, stroke: "#e3e7ee" }));
    strip.appendChild(svg("text", { x: Math.max(2, x - 2), y: 66, "font-size": 10, fill: "#8a94a3",
      "text-anchor": s === span ? "start" : "end" }, s === 0 ? "now" : `-${s}s`));
  }
  const rows = { fault: 14, heal: 14, election: 32, leader: 32, master: 48, pod: 48 };
  for (const t of state.timeline) {
    const age = now - t.t;
    if (age > span || age < 0) continue;
    const x = W - (age / span) * W;
    const c = svg("circle", { cx: x, cy: rows[t.kind] || 48, r: 5, fill: COLORS.timeline[t.kind] || "#7a8492" });
    c.appendChild(svg("title", {}, t.text));
    strip.appendChild(c);
  }
}

// --------------------------------------------------------------------------------------------- pods
function podCounts() {
  document.getElementById("pods-total").textContent = `${state.pods.total} in all` +
    (state.informers.pods !== "synced" ? ` (${state.informers.pods})` : "");
  const box = clear(document.getElementById("pod-counts"));
  const all = el("span", { class: "chip" + (podView.status === "" ? " sel" : ""), "data-status": "" }, "all");
  all.appendChild(el("b", {}, state.pods.total));
  box.appendChild(all);
  for (const [word, count] of state.pods.counts) {
    const chip = el("span", { class: "chip" + (podView.status === word ? " sel" : ""), "data-status": word });
    chip.appendChild(el("span", { class: "dot", style: { background: podColor(word) } }));
    chip.appendChild(document.createTextNode(word));
    chip.appendChild(el("b", {}, count));
    box.appendChild(chip);
  }
}
async function loadPods(force) {
  const now = Date.now();
  if (!force && podView.version === state.pods.version) return;
  if (!force && now - podView.shownAt < 400) { setTimeout(() => loadPods(false), 450); return; }
  podView.shownAt = now;
  podView.version = state.pods.version;
  const q = new URLSearchParams({ status: podView.status, offset: podView.offset, limit: podView.limit });
  const r = await call("GET", "/api/pods?" + q);
  if (!r.ok) return;
  const body = clear(document.querySelector("#pod-table tbody"));
  const t = Date.now() / 1000;
  for (const p of r.data.items) {
    const tr = el("tr", { "data-pod": p.name, "data-status": p.status });
    const name = el("td");
    const a = el("a", { class: "pod", "data-ns": p.namespace, "data-name": p.name }, p.name);
    name.appendChild(a);
    tr.appendChild(name);
    const st = el("td");
    st.appendChild(el("span", { class: "badge", style: { background: podColor(p.status) } }, p.status));
    tr.appendChild(st);
    tr.appendChild(el("td", { class: "num" }, p.ready));
    tr.appendChild(el("td", { class: "num" }, p.restarts));
    tr.appendChild(el("td", {}, p.node || "<none>"));
    tr.appendChild(el("td", { class: "num" }, p.created ? ago(p.created, t) : ""));
    body.appendChild(tr);
  }
  const last = Math.min(r.data.total, r.data.offset + r.data.items.length);
  document.getElementById("page-info").textContent = r.data.total ?
    `${r.data.offset + 1}–${last} of ${r.data.total}` : "no pods";
  document.getElementById("prev").disabled = r.data.offset === 0;
  document.getElementById("next").disabled = last >= r.data.total;
}
function createButtons() {
  const box = document.getElementById("create");
  for (const t of boot.templates) {
    const b = el("button", { "data-template": t.name, title: `reaches ${t.reaches}` }, t.title);
    if (!boot.controls) b.disabled = true;
    box.appendChild(b);
  }
}

// -------------------------------------------------------------------------------------------- nodes
function nodes() {
  document.getElementById("nodes-total").textContent = `${state.nodes.total} in all`;
  const box = clear(document.getElementById("node-counts"));
  for (const [word, count] of state.nodes.counts) {
    const chip = el("span", { class: "chip" });
    chip.appendChild(el("span", { class: "dot", style: { background: COLORS.node[word] || "#7a8492" } }));
    chip.appendChild(document.createTextNode(word));
    chip.appendChild(el("b", {}, count));
    box.appendChild(chip);
  }
  const list = clear(document.getElementById("node-list"));
  for (const n of state.nodes.items) {
    const word = n.status.split(",")[0];
    list.appendChild(el("span", { style: { background: COLORS.node[word] || "#7a8492" }, title: n.status,
      "data-node": n.name }, `${n.name} ${n.status}`));
  }
  if (state.nodes.total > state.nodes.items.length) {
    list.appendChild(el("span", { style: { background: "#aab4c0" } }, `+${state.nodes.total - state.nodes.items.length} more`));
  }
}

// --------------------------------------------------------------------------------------------- flow
function stepTime(s) {
  // traced steps to the millisecond; steps dated by events and conditions to the second
  // (a one-second stamp placed between traced steps shows its upper bound: "≤")
  if (s.bound) return `≤ +${s.t_s.toFixed(3)} s`;
  return s.precise ? `+${s.t_s.toFixed(3)} s` : `+${s.t_s.toFixed(0)} s`;
}
async function showFlow(ns, name) {
  flowPod = { ns, name };
  const r = await call("GET", "/api/flow?" + new URLSearchParams({ namespace: ns, name }));
  const title = document.getElementById("flow-title");
  if (!r.ok) { title.textContent = `${name}: ${r.data.message || r.code}`; return; }
  const f = r.data;
  title.textContent = `${f.namespace}/${f.pod} — ${f.status}` + (f.stopped_at ? `, stopped at “${f.stopped_at}”` : "");
  const g = clear(document.getElementById("flow"));
  const laneH = 64, top = 6, left = 92, W = 1200;
  f.lanes.forEach((lane, i) => {
    const y = top + i * laneH;
    g.appendChild(svg("rect", { x: 0, y, width: W, height: laneH - 4, fill: i % 2 ? "#f7f9fc" : "#eef2f7", rx: 4 }));
    g.appendChild(svg("text", { x: 8, y: y + laneH / 2 + 2, "font-size": 13, "font-weight": 600, fill: "#1c2430" }, lane));
  });
  const stepW = (W - left - 10) / Math.max(1, f.steps.length);
  let prev = null;
  f.steps.forEach((s, i) => {
    const lane = f.lanes.indexOf(s.lane);
    const x = left + i * stepW + 4, y = top + lane * laneH + 6, w = stepW - 8, h = laneH - 16;
    const color = COLORS.step[s.state];
    if (prev) g.appendChild(svg("path", { d: `M${prev[0]},${prev[1]} L${x},${y + h / 2}`, stroke: "#8a94a3",
      "stroke-width": 1.5, fill: "none" }));
    const box = svg("rect", { x, y, width: w, height: h, rx: 6, fill: color, "data-step": s.step,
      "data-state": s.state });
    box.appendChild(svg("title", {}, s.detail));
    g.appendChild(box);
    const words = s.step.split(" ");
    const cut = s.step.length > 12 ? Math.ceil(words.length / 2) : words.length;
    const lines = [words.slice(0, cut).join(" "), words.slice(cut).join(" ")].filter(Boolean);
    const size = Math.min(11.5, (w - 8) / (0.6 * Math.max(...lines.map(l => l.length))));
    lines.forEach((line, k) => g.appendChild(svg("text", { x: x + w / 2, y: y + 14 + k * 13, "text-anchor": "middle",
      "font-size": size.toFixed(1), fill: "#fff", "font-weight": 600 }, line)));
    g.appendChild(svg("text", { x: x + w / 2, y: y + h - 5, "text-anchor": "middle", "font-size": 11, fill: "#fff" },
      s.t_s === null ? (s.state === "waiting" ? "waiting" : "") : stepTime(s)));
    prev = [x + w, y + h / 2];
  });
  const list = clear(document.getElementById("flow-steps"));
  for (const s of f.steps) {
    const li = el("li", { "data-state": s.state });
    li.appendChild(el("b", { style: { color: COLORS.step[s.state] } }, `${s.step}`));
    li.appendChild(document.createTextNode(` (${s.lane}${s.t_s === null ? "" : ", " + stepTime(s)}) `));
    li.appendChild(el("span", { class: "detail" }, s.detail));
    list.appendChild(li);
  }
}

// ----------------------------------------------------------------------------------------- controls
document.addEventListener("click", async (ev) => {
  const t = ev.target.closest("button, .chip, a.pod");
  if (!t) return;
  if (t.matches("a.pod")) { showFlow(t.dataset.ns, t.dataset.name); return; }
  if (t.matches(".chip[data-status]")) {
    podView.status = t.dataset.status; podView.offset = 0; podCounts(); loadPods(true); return;
  }
  if (t.id === "prev") { podView.offset = Math.max(0, podView.offset - podView.limit); loadPods(true); return; }
  if (t.id === "next") { podView.offset += podView.limit; loadPods(true); return; }
  if (t.dataset.template) {
    const msg = document.getElementById("pod-msg");
    msg.className = "msg"; msg.textContent = "creating…";
    const r = await call("POST", "/api/pods", { template: t.dataset.template });
    msg.className = r.ok ? "msg" : "msg err";
    msg.textContent = r.data.message || r.code;
    return;
  }
  if (t.dataset.action) {
    const msg = document.getElementById("fault-msg");
    const body = { action: t.dataset.action, target: t.dataset.target || "",
      for_s: Number(document.getElementById("for-s").value) };
    if (t.dataset.latency) body.latency_ms = Number(t.dataset.latency);
    msg.className = "msg"; msg.textContent = `${body.action} ${body.target}…`;
    const r = await call("POST", "/api/fault", body);
    msg.className = r.ok ? "msg" : "msg err";
    msg.textContent = r.data.message || String(r.code);
  }
});

function faultsPanel() {
  for (const b of document.querySelectorAll("#faults button")) {
    b.disabled = !boot.controls || (b.classList.contains("link") && !state.chaos);
  }
  document.getElementById("faults-note").textContent = !boot.controls ? "read-only dashboard" :
    state.chaos ? "through Toxiproxy" : "link faults need `hacluster up --chaos`";
}

// ------------------------------------------------------------------------------------------- render
function render() {
  header(); graph(); masterTable(); timeline(); podCounts(); nodes(); faultsPanel();
  loadPods(false);
}
legend();
createButtons();
render();

function connect() {
  const live = document.getElementById("live");
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(`${proto}//${location.host}/events?` + new URLSearchParams({ token }));
  ws.onopen = () => { live.textContent = "live"; live.className = "live on"; };
  ws.onmessage = (ev) => {
    state = JSON.parse(ev.data);
    render();
    if (flowPod && Date.now() - (connect.flowAt || 0) > 1000) {
      connect.flowAt = Date.now(); showFlow(flowPod.ns, flowPod.name);
    }
  };
  ws.onclose = () => {
    live.textContent = "reconnecting…"; live.className = "live off";
    setTimeout(connect, 1000);
  };
}
connect();
