"""The Profile page's HTML and script (a module, not a data file, so it ships in any install).

Everything is fetched relative to the page, so it works wherever the router is mounted.
"""

PAGE = r"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>anyware · Profile</title>
<script src="static/plotly.min.js"></script>
<style>
 body { font: 14px system-ui, sans-serif; margin: 1.2em 2em; color: #222; }
 h1 { font-size: 1.4em; margin: 0 0 .3em; } h2 { font-size: 1.1em; margin: 1.2em 0 .3em; }
 .headline { background: #f4f6fa; border-left: 4px solid #3b6fd8; padding: .5em .8em; margin: .3em 0; }
 .problems { color: #8a5300; font-size: .9em; }
 table { border-collapse: collapse; font-size: .9em; } td, th { padding: 2px 8px; border-bottom: 1px solid #ddd; text-align: left; }
 td.num { text-align: right; font-variant-numeric: tabular-nums; }
 .row { display: flex; gap: 1em; flex-wrap: wrap; } .chart { width: 560px; height: 340px; }
 #timeline-chart { width: 100%; height: 420px; }
 .controls { margin: .4em 0; } select, button, a.button { font: inherit; margin-right: .6em; }
 a.button { padding: 3px 10px; border: 1px solid #3b6fd8; border-radius: 4px; text-decoration: none; color: #3b6fd8; }
</style>
</head>
<body>
<h1>Profile <span id="source"></span></h1>
<div id="status">loading…</div>
<div class="headline" id="slowest"></div>
<div class="headline" id="biggest"></div>
<div class="problems" id="problems"></div>
<p><a class="button" id="export-link" href="export/merged.json" download="merged.pt.trace.json">Export merged Perfetto trace</a>
 <span style="font-size:.85em;color:#666">open it at ui.perfetto.dev</span></p>
<div class="row">
 <div class="chart" id="breakdown-chart"></div>
 <div class="chart" id="overlap-chart"></div>
</div>
<h2>Rank</h2>
<div class="controls"><select id="rank-select"></select></div>
<div class="row">
 <div class="chart" id="steps-chart"></div>
 <div id="launch"></div>
</div>
<h2>Communication</h2>
<table id="comm-ops"><thead><tr><th>name</th><th>calls</th><th>total ms</th><th>overlapped with compute</th></tr></thead><tbody></tbody></table>
<h2>Top ops and kernels</h2>
<table id="top-ops"><thead><tr><th>kind</th><th>name</th><th>bucket</th><th>calls</th><th>total ms</th><th>mean µs</th><th>module</th><th>source / launched by</th></tr></thead><tbody></tbody></table>
<h2>Timeline of one step</h2>
<div class="controls"><select id="step-select"></select><span id="timeline-note"></span></div>
<div id="timeline-chart"></div>
<script>
const COLORS = {compute: "#3b6fd8", comm: "#e07b24", memory: "#2ca02c", other: "#9467bd", idle: "#c7c7c7",
  "communication": "#e07b24", "memory copy": "#2ca02c", "other (sync)": "#9467bd"};
const LABELS = {compute: "compute", comm: "communication", memory: "memory copy", other: "other (sync)", idle: "idle"};
let REPORT = null;
const esc = s => String(s ?? "").replace(/[&<>"]/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[c]));
const ms = us => (us / 1000).toFixed(3);
// Kernel names without return type, templates and arguments, like `anyware profile summary`.
function shortName(n) {
  if (/^(Memcpy|Memset|dma)/.test(n) || !/[<(]/.test(n)) return n;
  let out = "", depth = 0;
  for (const c of n.replace(/^void /, "").replaceAll("(anonymous namespace)::", "")) {
    if (c === "<" || c === "(") depth++; else if ((c === ">" || c === ")") && depth) depth--; else if (!depth) out += c;
  }
  return out.trim() || n;
}

async function load() {
  const r = await fetch("api/report");
  if (!r.ok) { document.getElementById("status").textContent = "error: " + (await r.json()).detail; return; }
  REPORT = await r.json();
  document.getElementById("source").textContent = "· " + REPORT.source;
  const mode = REPORT.ranks[0].mode;
  document.getElementById("status").textContent = `${REPORT.ranks.length} rank(s), ${mode === "device" ? "device-stream" : "host-operator (CPU-only)"} breakdown`;
  const s = REPORT.slowest;
  document.getElementById("slowest").textContent = s
    ? `Slowest rank: ${s.rank} — ${ms(s.busy_per_step_us)} ms busy per step vs median ${ms(s.median_busy_per_step_us)} ms` +
      (s.top_extra.length ? `; extra on ${s.top_extra.slice(0, 3).map(t => shortName(t.name) + " +" + ms(t.extra_per_step_us) + " ms").join(", ")}` : "")
    : "Single rank: no cross-rank comparison.";
  document.getElementById("biggest").textContent = "Biggest cost: " + REPORT.biggest_cost;
  document.getElementById("problems").innerHTML = REPORT.problems.map(p => "⚠ " + esc(p)).join("<br>");
  drawBreakdown(); drawOverlap();
  const sel = document.getElementById("rank-select");
  sel.innerHTML = REPORT.ranks.map(r => `<option value="${r.rank}">rank ${r.rank}</option>`).join("");
  sel.onchange = () => showRank(+sel.value);
  showRank(REPORT.ranks[0].rank);
}

function drawBreakdown() {
  const ranks = REPORT.ranks.map(r => "rank " + r.rank);
  const traces = REPORT.buckets.map(b => ({type: "bar", name: LABELS[b], x: ranks,
    y: REPORT.ranks.map(r => r.breakdown.pct[b]), marker: {color: COLORS[b]},
    customdata: REPORT.ranks.map(r => ms(r.breakdown[b + "_us"])),
    hovertemplate: "%{y:.1f}% (%{customdata} ms)<extra>" + LABELS[b] + "</extra>"}));
  Plotly.newPlot("breakdown-chart", traces, {barmode: "stack", title: {text: "Time breakdown per rank"},
    yaxis: {title: {text: "% of span"}, range: [0, 100]}, margin: {t: 40, r: 10}}, {displaylogo: false});
}

function drawOverlap() {
  const ranks = REPORT.ranks.map(r => "rank " + r.rank);
  Plotly.newPlot("overlap-chart", [{type: "bar", x: ranks, y: REPORT.ranks.map(r => r.overlap_pct ?? 0),
    marker: {color: COLORS.comm}, hovertemplate: "%{y:.1f}% of communication hidden behind compute<extra></extra>"}],
    {title: {text: "Communication overlapped with compute"}, yaxis: {title: {text: "%"}, range: [0, 100]}, margin: {t: 40, r: 10}}, {displaylogo: false});
}

function showRank(rank) {
  const r = REPORT.ranks.find(x => x.rank === rank);
  const steps = r.steps.filter(s => s.breakdown);
  Plotly.newPlot("steps-chart", REPORT.buckets.map(b => ({type: "bar", name: LABELS[b], x: steps.map(s => "step " + s.step),
    y: steps.map(s => s.breakdown[b + "_us"] / 1000), marker: {color: COLORS[b]}})),
    {barmode: "stack", title: {text: `Rank ${rank}: breakdown per step`}, yaxis: {title: {text: "ms"}}, margin: {t: 40, r: 10}}, {displaylogo: false});
  const l = r.launch;
  document.getElementById("launch").innerHTML = l ? `<table><tr><th colspan=2>Kernel launches</th></tr>
    <tr><td>launches</td><td class=num>${l.launches}</td></tr><tr><td>per second</td><td class=num>${l.launches_per_s}</td></tr>
    <tr><td>mean launch call µs</td><td class=num>${l.mean_launch_us ?? "—"}</td></tr>
    <tr><td>median launch→start µs</td><td class=num>${l.median_queue_us ?? "—"}</td></tr>
    <tr><td>device waiting on host</td><td class=num>${l.starved_pct}%</td></tr>
    <tr><td>host-bound</td><td class=num id="host-bound">${l.host_bound ? "yes" : "no"}</td></tr></table>`
    : `<p>No device events: the breakdown is of host operators.</p>`;
  document.querySelector("#comm-ops tbody").innerHTML = r.comm_ops.length
    ? r.comm_ops.map(c => `<tr><td title="${esc(c.name)}">${esc(shortName(c.name).slice(0, 80))}</td><td class=num>${c.count}</td>
      <td class=num>${ms(c.total_us)}</td><td class=num>${c.overlap_pct === null ? "—" : c.overlap_pct.toFixed(1) + "%"}</td></tr>`).join("")
    : `<tr><td colspan=4>no communication in this trace</td></tr>`;
  const rows = [...r.top_kernels, ...r.top_ops];
  document.querySelector("#top-ops tbody").innerHTML = rows.map(o => `<tr><td>${o.kind}</td><td title="${esc(o.name)}">${esc(shortName(o.name).slice(0, 80))}</td>
    <td>${esc(o.bucket)}</td><td class=num>${o.count}</td><td class=num>${ms(o.total_us)}</td><td class=num>${o.mean_us.toFixed(1)}</td>
    <td>${esc(o.module)}</td><td>${esc(o.source || o.launched_by)}</td></tr>`).join("");
  const ss = document.getElementById("step-select");
  ss.innerHTML = r.steps.map(s => `<option value="${s.step}">step ${s.step}</option>`).join("");
  ss.onchange = () => drawTimeline(rank, +ss.value);
  if (r.steps.length) drawTimeline(rank, r.steps[0].step);
  else { document.getElementById("timeline-note").textContent = "no ProfilerStep markers in this trace"; Plotly.purge("timeline-chart"); }
}

async function drawTimeline(rank, step) {
  const resp = await fetch(`api/timeline?rank=${rank}&step=${step}`);
  const t = await resp.json();
  if (!resp.ok) { document.getElementById("timeline-note").textContent = t.detail; return; }
  document.getElementById("timeline-note").textContent = ` ${t.shown} of ${t.total} events, step ${ms(t.step_us)} ms`;
  const byBucket = {};
  for (const e of t.events) (byBucket[e.bucket] ||= []).push(e);
  const traces = Object.entries(byBucket).map(([b, evs]) => ({type: "bar", orientation: "h", name: b,
    base: evs.map(e => e.start_us / 1000), x: evs.map(e => Math.max(e.dur_us, 0.05) / 1000), y: evs.map(e => e.lane),
    text: evs.map(e => e.name), textposition: "none", hovertemplate: "%{text}<br>%{base:.3f} ms + %{x:.3f} ms<extra></extra>",
    marker: {color: COLORS[b] || "#888"}}));
  Plotly.newPlot("timeline-chart", traces, {barmode: "overlay", title: {text: `Rank ${rank}, step ${step}`},
    xaxis: {title: {text: "ms from step start"}}, yaxis: {categoryorder: "array", categoryarray: [...t.lanes].reverse()},
    margin: {t: 40, l: 140, r: 10}}, {displaylogo: false});
}
load();
</script>
</body>
</html>
"""
