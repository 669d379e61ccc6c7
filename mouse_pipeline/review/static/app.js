// mouse-pipeline review: the page's logic. Plain JS, no build step.
// State: the session (videos, behaviours, queue), the video shown (its predictions,
// original annotations, current labels as one Int8Array per behaviour, version), the
// frame shown, the marked range, the selected bout and the edits not saved yet.
"use strict";

const TOKEN = document.querySelector('meta[name="review-token"]').content;
const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"];
const $ = (id) => document.getElementById(id);

const S = {
  session: null, video: null, behaviors: [], cur: {}, orig: {}, pred: {}, probs: {},
  version: null, frame: 0, playing: false, markIn: null, markOut: null, selected: null,
  pending: [], stale: false, loading: 0,
};

// ---------------------------------------------------------------- server

async function api(path, body) {
  const opts = body === undefined ? {} : {
    method: "POST", body: JSON.stringify(body),
    headers: { "Content-Type": "application/json", "X-Review-Token": TOKEN },
  };
  const r = await fetch(path, opts);
  let data = null;
  try { data = await r.json(); } catch (e) { data = { error: r.statusText }; }
  return { status: r.status, data };
}

function frameUrl(i) { return `/api/videos/${encodeURIComponent(S.video.id)}/frames/${i}`; }

// ---------------------------------------------------------------- labels

function fromRuns(runs, n) {
  const a = new Int8Array(n).fill(-1);
  for (const [s, e, v] of runs) a.fill(v, s, e + 1);
  return a;
}

function bouts(arr) {  // runs of 1 as [start, end] (end inclusive)
  const out = [];
  let s = -1;
  for (let i = 0; i <= arr.length; i++) {
    const on = i < arr.length && arr[i] === 1;
    if (on && s < 0) s = i;
    if (!on && s >= 0) { out.push([s, i - 1]); s = -1; }
  }
  return out;
}

function applyEdit(edit) {  // the server applies the same edits in the same order
  if (edit.op === "set") S.cur[edit.behavior].fill(edit.value, edit.start, edit.end + 1);
  if (edit.op === "reviewed") {
    for (const b of S.behaviors) {
      const a = S.cur[b];
      for (let i = edit.start; i <= edit.end; i++) if (a[i] === -1) a[i] = 0;
    }
  }
}

function edit(...edits) {
  if (!S.session.writable) { banner("read-only session: start review with --out LABELS_DIR to edit"); return; }
  for (const e of edits) { applyEdit(e); S.pending.push(e); }
  status();
  render();
}

async function save() {
  if (!S.pending.length) { status("nothing to save"); return true; }
  const { status: code, data } = await api(`/api/videos/${encodeURIComponent(S.video.id)}/labels`,
    { version: S.version, edits: S.pending });
  if (code === 409) {
    S.stale = true;
    banner(`Not saved: ${data.error} Your ${S.pending.length} unsaved edit(s) are kept on this page until you reload.`);
    return false;
  }
  if (code !== 200) { banner(`Not saved: ${data.error}`); return false; }
  setCurrent(data);
  S.pending = [];
  banner(`saved to ${data.saved_to}`, true);
  status();
  render();
  return true;
}

function setCurrent(state) {
  const n = S.video.n_frames;
  for (const b of S.behaviors) S.cur[b] = fromRuns(state.labels[b], n);
  S.version = state.version;
  S.reviewed = state.reviewed;
}

// ---------------------------------------------------------------- loading

async function loadSession() {
  const { data } = await api("/api/session");
  S.session = data;
  S.behaviors = data.behaviors;
  const sel = $("video");
  for (const v of data.videos) sel.add(new Option(`${v.id}${v.predictions ? "" : " (no predictions)"}`, v.id));
  for (const id of ["add-behavior", "b-behavior", "list-behavior"]) {
    for (const b of S.behaviors) $(id).add(new Option(b, b));
  }
  if (data.queue.length) {
    $("queue-panel").hidden = false;
    const ol = $("queue");
    data.queue.forEach((q) => {
      const li = document.createElement("li");
      li.textContent = `${q.video} ${q.start}\u2013${q.end}${q.score === null ? "" : ` (${q.score.toFixed(3)})`} ${q.why}`;
      li.onclick = () => jumpQueue(q);
      ol.appendChild(li);
    });
  }
  $("save").disabled = !data.writable;
  $("boris").disabled = !data.writable;
  if (!data.writable) banner("read-only session: start review with --out LABELS_DIR to save corrections");
  if (data.videos.length) await loadVideo(data.videos[0].id);
}

async function loadVideo(id) {
  if (S.pending.length && !confirm(`${S.pending.length} unsaved edit(s) on ${S.video.id}: drop them?`)) {
    $("video").value = S.video.id;
    return;
  }
  stop();
  const { data } = await api(`/api/videos/${encodeURIComponent(id)}`);
  S.video = data;
  S.pending = []; S.selected = null; S.markIn = S.markOut = null; S.stale = false;
  if (S.session.writable) banner("");
  $("selected").textContent = "no bout selected";
  for (const f of ["b-start", "b-end"]) $(f).value = "";
  rangeText();
  const n = data.n_frames;
  S.orig = {}; S.pred = {}; S.probs = {};
  for (const b of S.behaviors) {
    S.orig[b] = fromRuns(data.original[b], n);
    if (data.predictions) {
      S.pred[b] = fromRuns(data.predictions.labels[b], n);
      S.probs[b] = Float32Array.from(data.predictions.probs[b]);
    }
  }
  setCurrent(data.current);
  $("video").value = id;
  $("source").textContent = data.predictions ? `predictions: ${data.predictions.source}` : "no predictions";
  $("scrub").max = n - 1;
  resizeCanvas();
  await show(0);
  status();
}

// ---------------------------------------------------------------- frames, playback

function show(i) {
  i = Math.max(0, Math.min(S.video.n_frames - 1, i));
  S.frame = i;
  $("scrub").value = i;
  const t = (i / S.video.fps).toFixed(2);
  $("pos").textContent = `frame ${i} / ${S.video.n_frames - 1} \u00b7 ${t} s`;
  render();
  const url = frameUrl(i);
  const img = $("frame");
  S.loading++;
  return new Promise((resolve) => {
    const pre = new Image();
    pre.onload = () => { if (S.frame === i) { img.src = url; img.dataset.frame = i; } S.loading--; resolve(); };
    pre.onerror = () => { S.loading--; resolve(); };
    pre.src = url;
  });
}

async function play() {
  if (S.playing) return;
  S.playing = true;
  $("play").innerHTML = "&#10074;&#10074;";
  const fps = S.video.fps * parseFloat($("speed").value);
  const t0 = performance.now(), f0 = S.frame;
  while (S.playing) {
    const target = f0 + Math.floor((performance.now() - t0) / 1000 * fps);
    if (target >= S.video.n_frames) break;
    if (target > S.frame) await show(target);
    else await new Promise((r) => setTimeout(r, Math.max(1, 1000 / fps / 2)));
  }
  stop();
}

function stop() { S.playing = false; $("play").innerHTML = "&#9654;"; }

// ---------------------------------------------------------------- navigation

function allBouts(source) {
  const src = source === "predictions" ? S.pred : S.cur;
  const only = $("list-behavior").value;
  const out = [];
  S.behaviors.forEach((b, k) => {
    if (!src[b] || (only && b !== only)) return;
    for (const [s, e] of bouts(src[b])) out.push({ behavior: b, k, start: s, end: e, source });
  });
  return out.sort((x, y) => x.start - y.start || x.k - y.k);
}

function jumpBout(dir) {
  const list = allBouts($("list-source").value);
  const next = dir > 0 ? list.find((b) => b.start > S.frame) : [...list].reverse().find((b) => b.start < S.frame);
  if (next) select(next);
}

function disagrees(i) {
  if (!S.video.predictions) return false;
  return S.behaviors.some((b) => S.cur[b][i] !== -1 && S.cur[b][i] !== S.pred[b][i]);
}

function jumpDisagreement(dir) {
  const n = S.video.n_frames;
  let i = S.frame;
  while (i >= 0 && i < n && disagrees(i)) i += dir;  // leave the current stretch first
  for (; i >= 0 && i < n; i += dir) {
    if (disagrees(i)) {
      while (dir < 0 && i > 0 && disagrees(i - 1)) i--;  // to the start of that stretch
      show(i);
      return;
    }
  }
  status("no further disagreement");
}

function select(bout) {
  S.selected = bout;
  $("b-start").value = bout.start; $("b-end").value = bout.end; $("b-behavior").value = bout.behavior;
  $("b-accept").disabled = bout.source !== "predictions";
  $("selected").textContent = `${bout.source === "predictions" ? "predicted" : "labelled"} ${bout.behavior} ` +
    `${bout.start}\u2013${bout.end} (${bout.end - bout.start + 1} frames)`;
  show(bout.start);
}

function jumpQueue(q) {
  const go = async () => {
    if (S.video.id !== q.video) await loadVideo(q.video);
    if (S.video.id !== q.video) return;
    S.markIn = q.start; S.markOut = q.end;
    rangeText();
    show(q.start);
  };
  go();
}

// ---------------------------------------------------------------- editing

function moveSelected(start, end, behavior) {
  const b = S.selected;
  if (!b || b.source !== "labels") { status("select a labelled bout first"); return; }
  if (!(start >= 0 && end >= start && end < S.video.n_frames)) { status("start and end must be frames, start <= end"); return; }
  edit({ op: "set", behavior: b.behavior, start: b.start, end: b.end, value: 0 },
       { op: "set", behavior, start, end, value: 1 });
  S.selected = { ...b, start, end, behavior, k: S.behaviors.indexOf(behavior) };
  select(S.selected);
}

function deleteSelected() {
  const b = S.selected;
  if (!b || b.source !== "labels") { status("select a labelled bout first"); return; }
  edit({ op: "set", behavior: b.behavior, start: b.start, end: b.end, value: 0 });
  S.selected = null;
  $("selected").textContent = "no bout selected";
}

function markedRange() {
  if (S.markIn === null || S.markOut === null) { status("mark in (i) and out (o) first"); return null; }
  return [Math.min(S.markIn, S.markOut), Math.max(S.markIn, S.markOut)];
}

function addBout() {
  const r = markedRange();
  if (r) edit({ op: "set", behavior: $("add-behavior").value, start: r[0], end: r[1], value: 1 });
}

function markReviewed() {
  const r = markedRange();
  if (r) edit({ op: "reviewed", start: r[0], end: r[1] });
}

// ---------------------------------------------------------------- drawing

const LANE = 14, TRACE = 34, GAP = 6, LEFT = 110;

function layout() {
  const k = S.behaviors.length;
  const rows = [];
  let y = 4;
  const block = (title, src, kind) => {
    rows.push({ title, y, kind: "title" }); y += 14;
    S.behaviors.forEach((b, j) => { rows.push({ b, j, y, kind, src }); y += kind === "trace" ? TRACE : LANE; });
    y += GAP;
  };
  if (S.video.predictions) block("predictions", S.pred, "lane");
  block("labels", S.cur, "lane");
  if (S.video.predictions) { rows.push({ y: y - GAP, kind: "disagree" }); y += LANE - GAP + 2; }
  if (S.video.predictions) block("probabilities", S.probs, "trace");
  rows.push({ y, kind: "reviewed" }); y += LANE + 4;
  return { rows, height: y + (k ? 0 : 0) };
}

function resizeCanvas() {
  const c = $("timeline");
  const w = c.clientWidth || 900;
  const { height } = layout();
  c.width = w * devicePixelRatio; c.height = height * devicePixelRatio;
  c.style.height = `${height}px`;
}

function view() {
  const n = S.video.n_frames, z = parseInt($("zoom").value, 10);
  if (!z || z >= n) return [0, n];
  let v0 = Math.max(0, Math.min(n - z, S.frame - Math.floor(z / 2)));
  return [v0, v0 + z];
}

function render() {
  if (!S.video) return;
  const c = $("timeline"), ctx = c.getContext("2d");
  ctx.setTransform(devicePixelRatio, 0, 0, devicePixelRatio, 0, 0);
  const W = c.width / devicePixelRatio - LEFT - 6;
  const [v0, v1] = view();
  const x = (f) => LEFT + (f - v0) / (v1 - v0) * W;
  ctx.clearRect(0, 0, c.width, c.height);
  ctx.font = "11px system-ui, sans-serif";
  ctx.textBaseline = "middle";
  for (const row of layout().rows) {
    if (row.kind === "title") { ctx.fillStyle = "#333"; ctx.fillText(row.title, 4, row.y + 6); continue; }
    if (row.kind === "disagree") {  // frames where the labels and the predictions differ
      ctx.fillStyle = "#555"; ctx.fillText("disagree", 14, row.y + LANE / 2);
      ctx.fillStyle = "#222";
      eachPixel(v0, v1, W, (px, f0, f1) => {
        for (let f = f0; f < f1; f++) if (disagrees(f)) { ctx.fillRect(LEFT + px, row.y + 3, 1, LANE - 6); break; }
      });
      continue;
    }
    if (row.kind === "reviewed") {
      ctx.fillStyle = "#555"; ctx.fillText("reviewed", 4, row.y + LANE / 2);
      ctx.fillStyle = "#eee"; ctx.fillRect(LEFT, row.y, W, LANE - 3);
      ctx.fillStyle = "#7a7"; for (const [s, e] of S.reviewed || []) spanRect(ctx, x, v0, v1, s, e, row.y, LANE - 3);
      continue;
    }
    const color = COLORS[row.j % COLORS.length];
    ctx.fillStyle = "#555"; ctx.fillText(row.b, 14, row.y + (row.kind === "trace" ? TRACE : LANE) / 2);
    if (row.kind === "lane") drawLane(ctx, row.src[row.b], x, v0, v1, row.y, color, W);
    else drawTrace(ctx, row.src[row.b], x, v0, v1, row.y, color, W, S.video.predictions.thresholds[row.b]);
  }
  if (S.markIn !== null) {
    const [a, b] = S.markOut === null ? [S.markIn, S.markIn] : [Math.min(S.markIn, S.markOut), Math.max(S.markIn, S.markOut)];
    ctx.fillStyle = "rgba(255, 200, 0, 0.25)";
    spanRect(ctx, x, v0, v1, a, b, 0, c.height / devicePixelRatio);
  }
  ctx.fillStyle = "#000";  // the cursor
  ctx.fillRect(Math.round(x(S.frame + 0.5)) - 0.5, 0, 1, c.height);
  renderList();
}

function spanRect(ctx, x, v0, v1, s, e, y, h) {
  if (e < v0 || s >= v1) return;
  const a = x(Math.max(s, v0)), b = x(Math.min(e + 1, v1));
  ctx.fillRect(a, y, Math.max(1, b - a), h);
}

function eachPixel(v0, v1, W, fn) {
  const per = (v1 - v0) / W;
  for (let px = 0; px < W; px++) {
    const f0 = Math.floor(v0 + px * per), f1 = Math.max(f0 + 1, Math.floor(v0 + (px + 1) * per));
    fn(px, f0, Math.min(f1, v1));
  }
}

function drawLane(ctx, arr, x, v0, v1, y, color, W) {
  const h = LANE - 3;
  ctx.fillStyle = "#fff"; ctx.fillRect(LEFT, y, W, h);
  let s = v0;
  for (let i = v0 + 1; i <= v1; i++) {
    if (i < v1 && arr[i] === arr[s]) continue;
    ctx.fillStyle = arr[s] === 1 ? color : arr[s] === 0 ? "#e4e4e4" : "#fff";
    spanRect(ctx, x, v0, v1, s, i - 1, y, h);
    if (arr[s] === -1) {  // not annotated: hatched
      ctx.strokeStyle = "#ccc"; ctx.beginPath();
      for (let px = x(s); px < x(i); px += 6) { ctx.moveTo(px, y + h); ctx.lineTo(Math.min(px + h, x(i)), y); }
      ctx.stroke();
    }
    s = i;
  }
}

function drawTrace(ctx, probs, x, v0, v1, y, color, W, threshold) {
  const h = TRACE - 6;
  ctx.fillStyle = "#fafafa"; ctx.fillRect(LEFT, y, W, h);
  ctx.strokeStyle = "#999"; ctx.setLineDash([3, 3]); ctx.beginPath();
  ctx.moveTo(LEFT, y + h * (1 - threshold)); ctx.lineTo(LEFT + W, y + h * (1 - threshold)); ctx.stroke();
  ctx.setLineDash([]);
  ctx.strokeStyle = color; ctx.beginPath();
  eachPixel(v0, v1, W, (px, f0, f1) => {
    let m = 0;
    for (let f = f0; f < f1; f++) m = Math.max(m, probs[f]);
    const py = y + h * (1 - m);
    if (px === 0) ctx.moveTo(LEFT + px, py); else ctx.lineTo(LEFT + px, py);
  });
  ctx.stroke();
}

function renderList() {
  const source = $("list-source").value;
  const list = allBouts(source);
  const ol = $("bouts");
  const key = `${source}|${$("list-behavior").value}|${list.map((b) => `${b.k}:${b.start}:${b.end}`).join(",")}`;
  if (ol.dataset.key !== key) {
    ol.dataset.key = key;
    ol.innerHTML = "";
    for (const b of list) {
      const li = document.createElement("li");
      li.dataset.start = b.start; li.dataset.end = b.end; li.dataset.behavior = b.behavior;
      const sw = document.createElement("span");
      sw.className = "swatch"; sw.style.background = COLORS[b.k % COLORS.length];
      li.append(sw, `${b.behavior} ${b.start}\u2013${b.end} (${((b.end - b.start + 1) / S.video.fps).toFixed(1)} s)`);
      li.onclick = () => select(b);
      ol.appendChild(li);
    }
  }
  for (const li of ol.children) {
    const sel = S.selected && S.selected.source === source && S.selected.behavior === li.dataset.behavior &&
      String(S.selected.start) === li.dataset.start;
    li.classList.toggle("sel", !!sel);
  }
}

// ---------------------------------------------------------------- messages

function banner(text, ok = false) {
  const b = $("banner");
  b.textContent = text; b.hidden = !text; b.classList.toggle("ok", ok);
}

function status(text) {
  $("status").textContent = text || (S.pending.length ? `${S.pending.length} unsaved edit(s)` :
    `labels ${S.version === "original" ? "as annotated" : `saved (${S.version.slice(0, 8)})`}`);
}

// ---------------------------------------------------------------- wiring

function wire() {
  $("video").onchange = (e) => loadVideo(e.target.value);
  $("play").onclick = () => (S.playing ? stop() : play());
  $("scrub").oninput = (e) => show(parseInt(e.target.value, 10));
  $("zoom").onchange = () => render();
  $("list-source").onchange = () => render();
  $("list-behavior").onchange = () => render();
  $("save").onclick = () => save();
  $("boris").onclick = async () => {
    if (S.pending.length && !(await save())) return;
    const { status: code, data } = await api(`/api/videos/${encodeURIComponent(S.video.id)}/export/boris`, {});
    banner(code === 200 ? `BORIS events written to ${data.path}` : `Not exported: ${data.error}`, code === 200);
  };
  $("mark-in").onclick = () => { S.markIn = S.frame; rangeText(); render(); };
  $("mark-out").onclick = () => { S.markOut = S.frame; rangeText(); render(); };
  $("add").onclick = addBout;
  $("reviewed").onclick = markReviewed;
  $("b-apply").onclick = () => moveSelected(parseInt($("b-start").value, 10), parseInt($("b-end").value, 10), $("b-behavior").value);
  $("b-delete").onclick = deleteSelected;
  $("b-accept").onclick = () => {
    const b = S.selected;
    if (b && b.source === "predictions") edit({ op: "set", behavior: b.behavior, start: b.start, end: b.end, value: 1 });
  };
  $("timeline").onclick = (e) => {
    const r = e.target.getBoundingClientRect();
    const W = r.width - LEFT - 6, [v0, v1] = view();
    if (e.clientX - r.left >= LEFT) show(Math.floor(v0 + (e.clientX - r.left - LEFT) / W * (v1 - v0)));
  };
  window.onresize = () => { resizeCanvas(); render(); };
  window.onbeforeunload = (e) => { if (S.pending.length && !S.stale) { e.preventDefault(); e.returnValue = ""; } };
  document.addEventListener("keydown", (e) => {
    const t = e.target;  // typing into a field is typing; the scrubber takes the page's keys
    if ((t.tagName === "INPUT" && t.type !== "range") || t.tagName === "SELECT" || t.tagName === "TEXTAREA") return;
    const step = e.shiftKey ? 10 : 1;
    const keys = {
      ArrowRight: () => show(S.frame + step), ArrowLeft: () => show(S.frame - step),
      " ": () => (S.playing ? stop() : play()), n: () => jumpBout(1), p: () => jumpBout(-1),
      d: () => jumpDisagreement(1), D: () => jumpDisagreement(-1),
      i: () => $("mark-in").click(), o: () => $("mark-out").click(), a: addBout, r: markReviewed,
      "[": () => S.selected && moveSelected(S.frame, Math.max(S.frame, S.selected.end), S.selected.behavior),
      "]": () => S.selected && moveSelected(Math.min(S.frame, S.selected.start), S.frame, S.selected.behavior),
      Delete: deleteSelected,
    };
    if ((e.ctrlKey || e.metaKey) && e.key === "s") { e.preventDefault(); save(); return; }
    if (keys[e.key] && !e.ctrlKey && !e.metaKey && !e.altKey) { e.preventDefault(); keys[e.key](); }
  });
}

function rangeText() {
  $("range").textContent = S.markIn === null && S.markOut === null ? "in \u2013 out: none"
    : `in ${S.markIn ?? "\u2013"} \u2013 out ${S.markOut ?? "\u2013"}`;
}

wire();
loadSession();
