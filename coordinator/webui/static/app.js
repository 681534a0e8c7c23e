// Loom's web UI: hash routes (#/jobs, #/cluster, #/job/NAME) rendered from
// the coordinator's JSON endpoints, polled every two seconds. Charts are
// SVG drawn here; nothing is loaded from anywhere but this coordinator.
"use strict";

const POLL_MS = 2000;
const NON_LOSS = new Set(["lr", "grad_norm", "tokens_per_sec", "step_time", "comm_wait", "data_wait"]);
const COLORS = ["#2f5fb3", "#d9534f", "#2e7d32", "#8e44ad", "#e67e22", "#16a085", "#7f8c8d", "#c0392b", "#34495e"];

// el builds an element: el("td", {class: "num"}, "text", child, ...).
function el(tag, attrs, ...kids) {
  const svg = ["svg", "path", "line", "text", "g", "rect", "polygon", "circle", "title"].includes(tag);
  const e = svg ? document.createElementNS("http://www.w3.org/2000/svg", tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    // Styles go through the CSSOM: the Content-Security-Policy refuses
    // inline style attributes.
    if (k === "style") e.style.cssText = v;
    else e.setAttribute(k, v);
  }
  for (const k of kids.flat()) {
    if (k === null || k === undefined || k === false) continue;
    e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  }
  return e;
}

async function getJSON(path) {
  const r = await fetch(path, {credentials: "same-origin", cache: "no-store"});
  if (r.status === 401) { location.reload(); throw new Error("not logged in"); }
  const body = await r.json().catch(() => ({error: r.status + " " + r.statusText}));
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

function fmtNum(v, digits = 4) {
  if (v === null || v === undefined || Number.isNaN(v)) return "NaN";
  if (!Number.isFinite(v)) return v > 0 ? "+Inf" : "-Inf";
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e6)) return v.toExponential(2);
  return Number(v.toPrecision(digits)).toString();
}

function fmtDur(s) {
  if (s < 0 || !Number.isFinite(s)) return "–";
  s = Math.round(s);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
  return h ? `${h}h${String(m).padStart(2, "0")}m` : m ? `${m}m${String(sec).padStart(2, "0")}s` : `${sec}s`;
}

function fmtTime(msec) {
  if (!msec) return "–";
  return new Date(msec).toLocaleString();
}

function ago(msec) {
  if (!msec) return "never";
  return fmtDur((Date.now() - msec) / 1000) + " ago";
}

function badge(state) { return el("span", {class: "badge " + state}, state); }

function bar(done, total) {
  const f = total > 0 ? Math.min(1, Math.max(0, done / total)) : 0;
  return el("span", {class: "bar", title: Math.round(100 * f) + "%"}, el("span", {style: `width:${(100 * f).toFixed(1)}%`}));
}

function table(id, head, rows) {
  return el("table", {id},
    el("thead", {}, el("tr", {}, head.map(h => el("th", {class: h.num ? "num" : null}, h.label || h)))),
    el("tbody", {}, rows));
}

function lossText(losses) {
  const ks = Object.keys(losses || {}).sort();
  if (!ks.length) return "–";
  const main = losses.loss !== undefined ? `loss ${fmtNum(Number(losses.loss))}` : "";
  const terms = ks.filter(k => k !== "loss").map(k => `${k} ${fmtNum(Number(losses[k]))}`).join(", ");
  return main + (terms ? (main ? " (" + terms + ")" : terms) : "");
}

// ---- charts ---------------------------------------------------------------

function niceTicks(lo, hi, n) {
  const span = hi - lo;
  if (!(span > 0)) return [lo];
  const step0 = span / n, mag = Math.pow(10, Math.floor(Math.log10(step0)));
  const step = [1, 2, 5, 10].map(m => m * mag).find(s => s >= step0) || 10 * mag;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9 * span; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

// chart draws series [{name, pts: [[x, y], ...], color, area}] as lines (or
// stacked areas when opts.stacked) with vertical marks [{x, label, color}].
function chart(key, title, series, opts = {}) {
  const W = 640, H = 220, L = 54, R = 12, T = 10, B = 26;
  const box = el("div", {class: "chart-box", "data-chart": key});
  box.append(el("h3", {}, title));
  const all = series.flatMap(s => s.pts);
  const finite = all.filter(p => Number.isFinite(p[1]));
  if (!finite.length) {
    box.append(el("p", {class: "muted"}, all.length ? "no finite values" : "no data yet"));
    return box;
  }
  let x0 = Math.min(...all.map(p => p[0])), x1 = Math.max(...all.map(p => p[0]));
  if (opts.xmin !== undefined) x0 = Math.min(x0, opts.xmin);
  if (opts.xmax !== undefined) x1 = Math.max(x1, opts.xmax);
  if (x1 === x0) { x0 -= 1; x1 += 1; }
  let ys = finite.map(p => p[1]);
  if (opts.stacked) {
    const tot = new Map();
    for (const s of series) for (const [x, y] of s.pts) if (Number.isFinite(y)) tot.set(x, (tot.get(x) || 0) + Math.max(0, y));
    ys = [...tot.values(), 0];
  }
  let y0 = Math.min(...ys), y1 = Math.max(...ys);
  if (opts.zero) y0 = Math.min(0, y0);
  if (y1 === y0) { y0 -= Math.abs(y0) * 0.1 || 1; y1 += Math.abs(y1) * 0.1 || 1; }
  const pad = (y1 - y0) * 0.05; y1 += pad; if (!opts.zero) y0 -= pad;
  const sx = x => L + (x - x0) / (x1 - x0) * (W - L - R);
  const sy = y => T + (y1 - y) / (y1 - y0) * (H - T - B);
  const svg = el("svg", {viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title});
  for (const t of niceTicks(y0, y1, 4)) {
    svg.append(el("line", {class: "gridline", x1: L, x2: W - R, y1: sy(t), y2: sy(t)}));
    svg.append(el("text", {x: L - 4, y: sy(t) + 3, "text-anchor": "end"}, fmtNum(t, 3)));
  }
  for (const t of niceTicks(x0, x1, 6)) {
    if (opts.integerX && t !== Math.round(t)) continue;
    svg.append(el("text", {x: sx(t), y: H - B + 14, "text-anchor": "middle"}, fmtNum(t, 6)));
  }
  svg.append(el("line", {class: "axis", x1: L, x2: W - R, y1: H - B, y2: H - B}));
  svg.append(el("line", {class: "axis", x1: L, x2: L, y1: T, y2: H - B}));
  for (const m of opts.marks || []) {
    if (m.x < x0 || m.x > x1) continue;
    svg.append(el("line", {x1: sx(m.x), x2: sx(m.x), y1: T, y2: H - B, stroke: m.color || "#999", "stroke-dasharray": "4 3", "data-mark": m.kind || ""},
      el("title", {}, m.label)));
    svg.append(el("text", {x: sx(m.x) + 3, y: T + 9, fill: m.color || "#999"}, m.label));
  }
  const legend = el("div", {class: "legend"});
  if (opts.stacked) {
    let base = new Map();
    series.forEach((s, i) => {
      const c = s.color || COLORS[i % COLORS.length];
      const pts = s.pts.filter(p => Number.isFinite(p[1]));
      const top = pts.map(([x, y]) => [x, (base.get(x) || 0) + Math.max(0, y)]);
      const poly = top.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`)
        .concat(pts.slice().reverse().map(([x]) => `${sx(x).toFixed(1)},${sy(base.get(x) || 0).toFixed(1)}`));
      svg.append(el("polygon", {points: poly.join(" "), fill: c, "fill-opacity": 0.75, "data-series": s.name, "data-points": pts.length}));
      const nb = new Map(base); for (const [x, y] of top) nb.set(x, y); base = nb;
      legend.append(el("span", {}, el("i", {style: `background:${c}`}), s.name));
    });
  } else {
    series.forEach((s, i) => {
      const c = s.color || COLORS[i % COLORS.length];
      let d = "", pen = false, n = 0;
      for (const [x, y] of s.pts) {
        if (!Number.isFinite(y)) { pen = false; continue; }
        d += (pen ? "L" : "M") + sx(x).toFixed(1) + " " + sy(y).toFixed(1);
        pen = true; n++;
      }
      svg.append(el("path", {d, fill: "none", stroke: c, "stroke-width": 1.6, "data-series": s.name, "data-points": n}));
      if (n === 1) {
        const p = s.pts.find(p => Number.isFinite(p[1]));
        svg.append(el("circle", {cx: sx(p[0]), cy: sy(p[1]), r: 2.5, fill: c}));
      }
      const bad = s.pts.filter(p => !Number.isFinite(p[1])).length;
      legend.append(el("span", {}, el("i", {style: `background:${c}`}), s.name, bad ? ` (${bad} non-finite)` : ""));
    });
  }
  // Hover: the values of every series at the nearest x.
  const tip = el("div", {class: "tip"});
  const cursor = el("line", {x1: 0, x2: 0, y1: T, y2: H - B, stroke: "#888", visibility: "hidden"});
  svg.append(cursor);
  svg.addEventListener("mousemove", ev => {
    const r = svg.getBoundingClientRect();
    const x = x0 + ((ev.clientX - r.left) * W / r.width - L) / (W - L - R) * (x1 - x0);
    let best = null;
    for (const p of all) if (best === null || Math.abs(p[0] - x) < Math.abs(best - x)) best = p[0];
    const lines = [`${opts.xlabel || "step"} ${best}`];
    for (const s of series) {
      const p = s.pts.find(p => p[0] === best);
      if (p) lines.push(`${s.name}: ${fmtNum(p[1])}`);
    }
    tip.textContent = lines.join("\n");
    tip.style.display = "block";
    tip.style.left = Math.min(ev.clientX - r.left + 14, r.width - 140) + "px";
    tip.style.top = "30px";
    cursor.setAttribute("x1", sx(best)); cursor.setAttribute("x2", sx(best));
    cursor.setAttribute("visibility", "visible");
  });
  svg.addEventListener("mouseleave", () => { tip.style.display = "none"; cursor.setAttribute("visibility", "hidden"); });
  box.append(svg, legend, tip);
  return box;
}

// ---- pages ----------------------------------------------------------------

async function pageJobs(main) {
  const jobs = await getJSON("/api/jobs");
  main.replaceChildren(el("h1", {}, "Jobs"));
  if (!jobs.length) {
    main.append(el("p", {class: "muted", id: "no-jobs"}, "No jobs yet. Submit one with: loom submit MANIFEST.yaml"));
    return;
  }
  main.append(table("jobs", ["Job", "State", "Stage", "Progress", {label: "Step", num: true}, "ETA", "Loss",
    {label: "Tokens/s", num: true}, {label: "Restarts", num: true}, "Updated"],
  jobs.map(j => el("tr", {"data-job": j.name},
    el("td", {}, el("a", {href: "#/job/" + encodeURIComponent(j.name)}, j.name), el("div", {class: "muted"}, `${j.recipe} ${j.model}`)),
    el("td", {}, badge(j.state), j.message ? el("div", {class: "muted"}, j.message) : null),
    el("td", {}, j.stages ? `${j.stage + 1}/${j.stages} ${j.stage_name}` : "–"),
    el("td", {}, bar(j.step, j.total_steps), " ", Math.floor(100 * j.step / Math.max(1, j.total_steps)) + "%"),
    el("td", {class: "num"}, `${j.step}/${j.total_steps}`),
    el("td", {}, j.eta >= 0 ? fmtDur(j.eta) : "–"),
    el("td", {class: "mono"}, lossText(j.losses)),
    el("td", {class: "num"}, j.tokens_per_sec ? Math.round(j.tokens_per_sec) : "–"),
    el("td", {class: "num"}, j.restarts),
    el("td", {}, ago(j.updated))))));
}

async function pageCluster(main) {
  const c = await getJSON("/api/cluster");
  main.replaceChildren(...[el("h1", {}, "Cluster"),
    el("div", {class: "facts"},
      el("div", {}, el("b", {}, "leader"), el("span", {id: "leader"}, c.leader || "none known")),
      el("div", {}, el("b", {}, "term"), el("span", {id: "term"}, c.term)),
      el("div", {}, el("b", {}, "this node"), `${c.node} (${c.state.toLowerCase()})`),
      el("div", {}, el("b", {}, "commands applied"), c.applied)),
    c.error ? el("p", {class: "error"}, c.error) : null,
    el("h2", {}, "Coordinator nodes (Raft)"),
    table("servers", ["Node", "Role", "Suffrage", "Raft address", "API address"], c.servers.map(s =>
      el("tr", {"data-node": s.id},
        el("td", {}, s.id, s.self ? el("span", {class: "muted"}, " (this node)") : null),
        el("td", {}, s.leader ? badge("leader") : "follower"),
        el("td", {}, s.suffrage), el("td", {class: "mono"}, s.raft_addr), el("td", {class: "mono"}, s.api_addr || "–")))),
    el("h2", {}, "Workers"),
    c.workers.length ? table("workers", ["Worker", "State", "Job", {label: "Rank", num: true}, "Address", "Host",
      {label: "GPUs", num: true}, {label: "Last step", num: true}, "Last report", {label: "Tokens/s", num: true}],
    c.workers.map(w => el("tr", {"data-worker": w.id},
      el("td", {}, w.id), el("td", {}, badge(w.state), w.failure ? el("div", {class: "error"}, w.failure) : null),
      el("td", {}, w.job ? el("a", {href: "#/job/" + encodeURIComponent(w.job)}, w.job) : el("span", {class: "muted"}, "idle")),
      el("td", {class: "num"}, w.rank >= 0 ? w.rank : "–"),
      el("td", {class: "mono"}, w.addr), el("td", {}, w.host || "–"), el("td", {class: "num"}, w.gpus),
      el("td", {class: "num"}, w.last_step), el("td", {}, ago(w.last_report)),
      el("td", {class: "num"}, w.tokens_per_sec ? Math.round(w.tokens_per_sec) : "–")))) :
      el("p", {class: "muted"}, "No worker has registered.")].filter(Boolean));
}

function timeline(j) {
  const box = el("div", {class: "timeline", id: "timeline"});
  for (const s of j.timeline) {
    const done = Math.min(s.steps, Math.max(0, j.step - s.start));
    const seg = el("div", {class: "seg " + s.state, style: `flex:${Math.max(s.steps, 1)}`, "data-stage": s.name,
      title: `${s.name}: steps ${s.start + 1}–${s.end}, ${s.state}` + (s.started ? `, started ${fmtTime(s.started)}` : "") + (s.ended ? `, ended ${fmtTime(s.ended)}` : "")},
    el("div", {class: "fill", style: `width:${(100 * done / Math.max(1, s.steps)).toFixed(1)}%`}),
    el("span", {}, `${s.index + 1}. ${s.name} (${s.steps})`));
    box.append(seg);
  }
  return box;
}

// pointsOf returns [[step, value], ...] of a series, optionally one stage's.
function pointsOf(m, name, stage) {
  const s = m.series.find(s => s.name === name);
  if (!s) return [];
  return s.points.filter(p => stage === undefined || p[2] === stage).map(p => [p[0], Number(p[1])]);
}

async function pageJob(main, name) {
  const [j, m] = await Promise.all([getJSON("/api/jobs/" + encodeURIComponent(name)),
    getJSON("/api/jobs/" + encodeURIComponent(name) + "/metrics?max_points=0")]);
  const stageEnds = j.timeline.slice(0, -1).map(s => ({x: s.end, label: `end of ${s.name}`, color: "#888", kind: "stage"}));
  const restarts = j.generations.filter(g => g.restart).map(g => ({x: g.restore_step, label: `gen ${g.generation}`, color: "#d9534f", kind: "restart"}));
  const kids = [
    el("h1", {id: "job-title"}, j.name, " ", badge(j.state)),
    el("p", {class: "muted"}, `${j.recipe}, model ${j.model}` + (j.message ? ` — ${j.message}` : "")),
    el("div", {class: "facts"},
      el("div", {}, el("b", {}, "progress"), bar(j.step, j.total_steps), ` step ${j.step}/${j.total_steps}`),
      el("div", {}, el("b", {}, "stage"), `${j.stage + 1}/${j.stages} ${j.stage_name}`),
      el("div", {}, el("b", {}, "ETA"), j.eta >= 0 ? fmtDur(j.eta) : "–"),
      el("div", {}, el("b", {}, "speed"), j.step_time ? `${fmtNum(j.step_time, 3)} s/step` + (j.tokens_per_sec ? `, ${Math.round(j.tokens_per_sec)} tokens/s` : "") : "–"),
      el("div", {}, el("b", {}, "generation"), `${j.generation} (${j.restarts} restarts)`),
      el("div", {}, el("b", {}, "samples"), j.samples),
      el("div", {}, el("b", {}, "latest losses"), el("span", {class: "mono"}, lossText(j.losses)))),
    el("h2", {}, "Stages"), timeline(j),
  ];
  // Loss curves: one chart per stage, a line per term.
  const lossNames = m.series.map(s => s.name).filter(n => !NON_LOSS.has(n) && !n.startsWith("eval/"));
  lossNames.sort((a, b) => (a === "loss" ? -1 : b === "loss" ? 1 : a.localeCompare(b)));
  kids.push(el("h2", {}, "Loss"));
  const lossGrid = el("div", {class: "grid", id: "loss-charts"});
  const stagesWithPoints = j.timeline.filter(s => lossNames.some(n => pointsOf(m, n, s.index).length));
  for (const s of stagesWithPoints) {
    const restartsHere = restarts.filter(r => r.x > s.start && r.x < s.end);
    lossGrid.append(chart("loss-" + s.index, `stage ${s.index + 1} ${s.name}: loss per term (steps ${s.start + 1}–${s.end})`,
      lossNames.map(n => ({name: n, pts: pointsOf(m, n, s.index)})).filter(x => x.pts.length),
      {marks: restartsHere, integerX: true}));
  }
  if (!stagesWithPoints.length) lossGrid.append(el("p", {class: "muted"}, "No step has been recorded yet."));
  kids.push(lossGrid);
  if (m.resolution > 1) kids.push(el("p", {class: "muted"}, `Long run: each point is the mean of up to ${m.resolution} steps.`));
  // Throughput and where step time goes.
  kids.push(el("h2", {}, "Throughput and step time"));
  const st = pointsOf(m, "step_time"), cw = new Map(pointsOf(m, "comm_wait")), dw = new Map(pointsOf(m, "data_wait"));
  const compute = st.map(([x, y]) => [x, Math.max(0, y - (cw.get(x) || 0) - (dw.get(x) || 0))]);
  const tot = {compute: 0, comm: 0, data: 0};
  for (const [x, y] of compute) { tot.compute += y; tot.comm += cw.get(x) || 0; tot.data += dw.get(x) || 0; }
  const sum = tot.compute + tot.comm + tot.data;
  if (sum > 0) {
    const pct = k => (100 * tot[k] / sum).toFixed(1);
    kids.push(el("p", {id: "time-split"}, `Step time (rank 0, over the history): compute ${pct("compute")}%, communication ${pct("comm")}%, data ${pct("data")}%.`),
      el("div", {class: "split"}, el("span", {style: `width:${pct("compute")}%;background:${COLORS[0]}`, title: "compute"}),
        el("span", {style: `width:${pct("comm")}%;background:${COLORS[1]}`, title: "communication"}),
        el("span", {style: `width:${pct("data")}%;background:${COLORS[2]}`, title: "data"})));
  }
  kids.push(el("div", {class: "grid"},
    chart("throughput", "tokens/s (the job's, all ranks)", [{name: "tokens_per_sec", pts: pointsOf(m, "tokens_per_sec")}], {marks: stageEnds.concat(restarts), zero: true, integerX: true}),
    chart("step-time", "step time (s): compute, communication, data", [
      {name: "compute", pts: compute, color: COLORS[0]},
      {name: "communication", pts: pointsOf(m, "comm_wait"), color: COLORS[1]},
      {name: "data", pts: pointsOf(m, "data_wait"), color: COLORS[2]}], {stacked: true, zero: true, marks: stageEnds, integerX: true}),
    chart("lr", "learning rate", [{name: "lr", pts: pointsOf(m, "lr")}], {marks: stageEnds, zero: true, integerX: true}),
    chart("grad-norm", "gradient norm (before clipping)", [{name: "grad_norm", pts: pointsOf(m, "grad_norm")}], {marks: stageEnds, integerX: true})));
  // Evaluation.
  kids.push(el("h2", {}, "Evaluation"));
  if (j.eval.length) {
    kids.push(table("eval", ["Metric", {label: "Value", num: true}, {label: "Step", num: true}, "Stage"], j.eval.map(e =>
      el("tr", {}, el("td", {}, e.name.slice(5)), el("td", {class: "num"}, fmtNum(e.value)), el("td", {class: "num"}, e.step),
        el("td", {}, (j.timeline[e.stage] || {}).name || e.stage)))));
    kids.push(el("div", {class: "grid"}, chart("eval", "evaluation over steps", j.eval.map(e => ({name: e.name.slice(5), pts: pointsOf(m, e.name)})), {marks: stageEnds, integerX: true})));
  } else {
    kids.push(el("p", {class: "muted", id: "no-eval"}, "No evaluation results: the metric history has no eval/… series for this job."));
  }
  // Generations and restarts.
  kids.push(el("h2", {}, "Generations and restarts"));
  kids.push(table("generations", [{label: "Gen", num: true}, "Stage", "Started", {label: "From step", num: true}, "Ranks", "Why"],
    j.generations.slice().reverse().map(g => el("tr", {"data-generation": g.generation, class: g.restart ? "ev-restart" : null},
      el("td", {class: "num"}, g.generation), el("td", {}, g.stage_name), el("td", {}, fmtTime(g.started)),
      el("td", {class: "num"}, g.restore_step), el("td", {class: "mono"}, g.peers.length ? g.peers.join(" ") : "waiting for workers"),
      el("td", {}, g.restart ? el("b", {}, "restart: ") : null, g.reason || (g.restart ? "" : "scheduled"))))));
  kids.push(el("h3", {style: "margin-top:12px"}, "Events (most recent first)"));
  kids.push(table("events", ["Time", "Kind", "What"], j.events.slice().reverse().map(e =>
    el("tr", {class: "ev-" + e.kind, "data-kind": e.kind}, el("td", {}, fmtTime(e.time)), el("td", {}, e.kind), el("td", {}, e.msg)))));
  // Workers and checkpoints.
  kids.push(el("h2", {}, "Workers of this generation"));
  kids.push(j.workers.length ? table("job-workers", [{label: "Rank", num: true}, "Worker", "State", {label: "Last step", num: true}, "Last report", {label: "Tokens/s", num: true}],
    j.workers.map(w => el("tr", {}, el("td", {class: "num"}, w.rank), el("td", {}, w.id), el("td", {}, badge(w.state)),
      el("td", {class: "num"}, w.last_step), el("td", {}, ago(w.last_report)), el("td", {class: "num"}, Math.round(w.tokens_per_sec))))) :
    el("p", {class: "muted"}, "None: the job is not running."));
  kids.push(el("h2", {}, "Checkpoints"));
  kids.push(j.checkpoints.length ? table("checkpoints", [{label: "Step", num: true}, "Stage", {label: "Gen", num: true}, {label: "Samples", num: true},
    {label: "Objects", num: true}, {label: "Size", num: true}, "Committed"],
  j.checkpoints.slice().reverse().map(c => el("tr", {}, el("td", {class: "num"}, c.step), el("td", {}, (j.timeline[c.stage] || {}).name || c.stage),
    el("td", {class: "num"}, c.generation), el("td", {class: "num"}, c.samples), el("td", {class: "num"}, c.objects),
    el("td", {class: "num"}, (c.bytes / 1048576).toFixed(2) + " MiB"), el("td", {}, fmtTime(c.committed))))) :
    el("p", {class: "muted"}, "None committed yet."));
  if (j.corrupt.length) {
    kids.push(el("h3", {style: "margin-top:12px"}, "Set aside as corrupt (the job fell back to the checkpoint before)"));
    kids.push(table("corrupt-checkpoints", [{label: "Step", num: true}, {label: "Gen", num: true}, "Committed", "What the worker found"],
      j.corrupt.slice().reverse().map(c => el("tr", {}, el("td", {class: "num"}, c.step), el("td", {class: "num"}, c.generation),
        el("td", {}, fmtTime(c.committed)), el("td", {}, c.reason)))));
  }
  // Logs.
  kids.push(el("h2", {}, "Worker logs"));
  if (!j.logs.available) {
    kids.push(el("p", {class: "muted", id: "logs-hint"}, j.logs.hint));
  } else if (!j.logs.workers.length) {
    kids.push(el("p", {class: "muted"}, "No generation has had workers yet."));
  } else {
    for (const w of j.logs.workers) {
      kids.push(el("h3", {}, `${w.worker} (last ${w.lines.length} lines` + (j.workers.length ? ")" : ", of the job's last generation)")));
      kids.push(w.error ? el("p", {class: "error"}, w.error) : el("pre", {class: "log", "data-log": w.worker}, w.lines.join("\n")));
    }
  }
  main.replaceChildren(...kids);
}

// ---- routing and polling --------------------------------------------------

let timer = null;

async function render() {
  clearTimeout(timer);
  timer = null;
  const main = document.getElementById("main");
  const status = document.getElementById("status");
  const hash = location.hash || "#/jobs";
  const [, page, arg] = hash.match(/^#\/([a-z]+)(?:\/(.*))?$/) || [null, "jobs", null];
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.nav === page || (page === "job" && a.dataset.nav === "jobs"));
  const y = window.scrollY;
  try {
    // Render off-page, and show it only if the route is still the same
    // (a click may have moved on while this one was fetching).
    const out = document.createElement("div");
    if (page === "cluster") await pageCluster(out);
    else if (page === "job" && arg) await pageJob(out, decodeURIComponent(arg));
    else await pageJobs(out);
    if ((location.hash || "#/jobs") !== hash) return;
    main.replaceChildren(...out.childNodes);
    for (const pre of main.querySelectorAll("pre.log")) pre.scrollTop = pre.scrollHeight; // newest lines in view
    document.title = "Loom: " + (page === "job" ? decodeURIComponent(arg) : page);
    status.textContent = "updated " + new Date().toLocaleTimeString();
    status.classList.remove("error");
    window.scrollTo(0, y);
  } catch (e) {
    status.textContent = "error: " + e.message;
    status.classList.add("error");
  }
  timer = setTimeout(render, POLL_MS);
}

window.addEventListener("hashchange", () => { window.scrollTo(0, 0); render(); });
render();
