// anyware monitor dashboard: one SSE stream (/api/stream) feeds every panel; plotly.js comes
// from the installed plotly wheel. window.__anyware exposes the state (and event-to-browser
// latencies) for the browser test and the latency benchmark.
"use strict";
const params = new URLSearchParams(location.search);
const token = params.get("token");
function api(path) {
  return token ? path + (path.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token) : path;
}
const KEEP = 2000;
const CHART_POINTS = 400;
const S = { rows: {}, snap: null, latencies: [], renderMs: [], messages: 0, alertsSeen: {} };
window.__anyware = S;
let dirty = false;

function num(v) { return v === null || v === undefined ? null : Number(v); }
function esc(s) { return String(s ?? "").replace(/[&<>"]/g, c => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]); }
function ms(v) { return v === null || v === undefined ? "" : (Number(v) * 1e3).toFixed(1); }
function median(xs) { const s = xs.filter(x => x !== null && !isNaN(x)).sort((a, b) => a - b); return s.length ? s[Math.floor((s.length - 1) / 2)] : 0; }

function connect() {
  const es = new EventSource(api("/api/stream"));
  es.onmessage = m => {
    const msg = JSON.parse(m.data);
    const now = Date.now() / 1000;
    S.messages += 1;
    for (const r of msg.rows) {
      const list = (S.rows[r.rank] ||= []);
      list.push(r);
      if (list.length > KEEP) list.splice(0, list.length - KEEP);
      S.latencies.push(now - (r.t + r.dur));
    }
    if (S.latencies.length > 10000) S.latencies.splice(0, S.latencies.length - 10000);
    if (msg.snapshot) { S.snap = msg.snapshot; renderSnapshot(); }
    if (msg.rows.length) dirty = true;
  };
  es.onerror = () => { document.getElementById("status").textContent = "disconnected, retrying…"; };
}

const LAYOUT = { margin: { l: 45, r: 10, t: 10, b: 30 }, legend: { orientation: "h" } };
const CONFIG = { displayModeBar: false, responsive: true };

// One chart per tick, round-robin: a full redraw of all four blocked the page's only thread for
// ~0.4 s on a loaded 2-core box, and stream messages queued behind it.
const CHARTS = ["breakdown", "loss", "gradnorm", "heatmap"];
let nextChart = 0;
let stale = new Set();

function renderCharts() {
  if (!stale.size) return;
  while (!stale.has(CHARTS[nextChart])) nextChart = (nextChart + 1) % CHARTS.length;
  const name = CHARTS[nextChart];
  stale.delete(name);
  nextChart = (nextChart + 1) % CHARTS.length;
  const t0 = performance.now();
  drawChart(name);
  S.renderMs.push(performance.now() - t0);
  if (S.renderMs.length > 1000) S.renderMs.splice(0, 500);
}

function drawChart(name) {
  const ranks = Object.keys(S.rows).map(Number).sort((a, b) => a - b);
  if (name === "breakdown") {
    const phases = ["data", "forward", "backward", "optimizer", "comm", "other"];
    const parts = ["data", "forward", "backward", "optimizer", "comm"];
    const bars = phases.map(p => ({ type: "bar", name: p, x: ranks.map(r => "rank " + r), y: ranks.map(r => {
      const last = S.rows[r].slice(-20);
      if (p === "other") return median(last.map(x => num(x.dur) - parts.reduce((a, k) => a + (num(x[k]) || 0), 0)));
      return median(last.map(x => num(x[p])));
    }) }));
    Plotly.react("breakdown", bars, { ...LAYOUT, barmode: "stack", yaxis: { title: "s" } }, CONFIG);
  } else if (name === "loss" || name === "gradnorm") {
    // SVG traces over the last CHART_POINTS steps: WebGL (scattergl) falls back to software GL
    // in headless or GPU-less browsers and took ~1 s per redraw there.
    const key = name === "loss" ? "loss" : "grad_norm";
    const traces = ranks.map(r => { const rows = S.rows[r].slice(-CHART_POINTS); return { type: "scatter", mode: "lines",
      name: "rank " + r, x: rows.map(x => x.step), y: rows.map(x => num(x[key])) }; });
    Plotly.react(name, traces, LAYOUT, CONFIG);
  } else {
    const steps = [...new Set(ranks.flatMap(r => S.rows[r].slice(-120).map(x => x.step)))].sort((a, b) => a - b).slice(-120);
    const z = ranks.map(r => { const by = new Map(S.rows[r].map(x => [x.step, num(x.compute)])); return steps.map(s => by.get(s) ?? null); });
    Plotly.react("heatmap", [{ type: "heatmap", x: steps, y: ranks.map(r => "rank " + r), z, colorscale: "YlOrRd", colorbar: { title: "s" } }], LAYOUT, CONFIG);
  }
}

function renderSnapshot() {
  const s = S.snap;
  const rej = Object.values(s.ingest.rejected).reduce((a, b) => a + b, 0);
  const firing = s.alerts.filter(a => a.state === "firing").length;
  document.getElementById("status").textContent =
    `ranks ${s.ranks.length}/${s.world_size} · step ${s.steps} · ${firing} firing · records ${s.ingest.accepted} (${rej} rejected)`;
  const tbody = document.querySelector("#alerts tbody");
  tbody.innerHTML = s.alerts.slice().reverse().map(a => {
    S.alertsSeen[a.id] = a.state;
    const since = new Date(1000 * (a.t_firing || a.t_pending)).toLocaleTimeString();
    return `<tr data-state="${esc(a.state)}" data-check="${esc(a.check)}" data-culprit="${esc(a.culprit_rank)}">` +
      `<td>${esc(a.state)}</td><td>${esc(a.code)}</td><td>${esc(a.check)}</td><td>${a.culprit_rank ?? "—"}</td>` +
      `<td>${a.step ?? ""}</td><td>${esc(a.message)}</td><td>${since}</td></tr>`;
  }).join("") || `<tr><td colspan="7">no alerts</td></tr>`;
  const st = s.straggler ? s.straggler.rows : [];
  document.querySelector("#stragglers tbody").innerHTML = st.map(r =>
    `<tr class="${r.flagged ? "flagged" : ""}"><td>${r.rank}</td><td>${ms(r.busy_s)}</td><td>${ms(r.data_s)}</td>` +
    `<td>${r.score}</td><td>${r.z}</td><td>${ms(r.arrival_lag_s)}</td><td>${r.flagged ? "yes" : ""}</td></tr>`).join("");
  document.querySelector("#ranks tbody").innerHTML = s.ranks.map(r =>
    `<tr><td>${r.rank}</td><td>${esc(r.host)}</td><td>${r.pid ?? ""}</td><td>${r.step}</td><td>${r.last_seq}</td>` +
    `<td>${r.inflight ? esc(r.inflight[1]) + " #" + r.inflight[0] : ""}</td><td>${r.silent_s}</td><td>${esc(r.status)}</td></tr>`).join("");
  const h = s.hang;
  const el = document.getElementById("hang");
  if (!h || !h.stalled || !h.stalled.length) {
    el.innerHTML = `no hang (timeout ${h ? Number(h.timeout_s).toFixed(1) : "—"} s)`;
  } else {
    const stacks = Object.entries(h.stacks || {}).map(([rank, d]) =>
      `<details open data-rank="${esc(rank)}"><summary>rank ${esc(rank)} stacks</summary>` +
      d.threads.map(t => `<b>${esc(t.thread)}</b><pre>${esc(t.stack)}</pre>`).join("") + `</details>`).join("");
    el.innerHTML = `<p><b>stalled ranks:</b> ${h.stalled.join(", ")} · <b>culprit:</b> rank ${h.culprit_rank ?? "unknown"} · ` +
      `<b>last collective #:</b> ${esc(JSON.stringify(h.last_seq))}</p>` + (stacks || "<p>waiting for stacks…</p>");
  }
}

async function loadRuns() {
  const res = await fetch(api("/api/runs"));
  const data = await res.json();
  const box = document.getElementById("runlist");
  if (!data.runs.length) { box.textContent = "no saved runs next to this one"; return; }
  box.innerHTML = data.runs.map(r => `<label><input type="checkbox" value="${esc(r.name)}" ${r.name === data.current ? "checked" : ""}> ` +
    `${esc(r.name)}${r.name === data.current ? " (this run)" : ""} · ${r.ranks} ranks</label><br>`).join("");
  box.querySelectorAll("input").forEach(i => i.addEventListener("change", compare));
  compare();
}

async function compare() {
  const names = [...document.querySelectorAll("#runlist input:checked")].map(i => i.value);
  const runs = await Promise.all(names.map(n => fetch(api("/api/runs/" + encodeURIComponent(n))).then(r => r.json())));
  const trace = key => runs.map(r => ({ type: "scatter", mode: "lines", name: r.name, x: r.steps, y: r[key].map(num) }));
  Plotly.react("cmp-loss", trace("loss"), LAYOUT, CONFIG);
  Plotly.react("cmp-step", trace("step_s"), LAYOUT, CONFIG);
  document.querySelector("#cmp-alerts tbody").innerHTML = runs.flatMap(r => r.alerts.map(a =>
    `<tr><td>${esc(r.name)}</td><td>${esc(a.code)}</td><td>${esc(a.check)}</td><td>${esc(a.state)}</td><td>${a.culprit_rank ?? "—"}</td><td>${a.step ?? ""}</td><td>${esc(a.message)}</td></tr>`)).join("");
}

document.querySelectorAll("nav a[data-tab]").forEach(a => a.addEventListener("click", e => {
  e.preventDefault();
  document.querySelectorAll("nav a[data-tab]").forEach(x => x.classList.toggle("active", x === a));
  document.getElementById("tab-live").hidden = a.dataset.tab !== "live";
  document.getElementById("tab-compare").hidden = a.dataset.tab !== "compare";
  if (a.dataset.tab === "compare") loadRuns(); else dirty = true;
}));

connect();
setInterval(() => {
  if (dirty) { dirty = false; CHARTS.forEach(c => stale.add(c)); }
  if (!document.getElementById("tab-live").hidden) renderCharts();
}, 150);
