// The choreo operator console. Everything read from the broker (subjects,
// reasons, payloads, ids) is attacker-controlled: it only ever goes into the
// page as text (textContent, attribute values), never as markup.
"use strict";

const $ = (sel) => document.querySelector(sel);

// el builds an element: attrs are set as attributes (class, data-*, href…),
// children are elements or strings (text nodes).
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== undefined && v !== null && v !== false) e.setAttribute(k, String(v));
  }
  for (const c of children) {
    if (c === undefined || c === null) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

async function getJSON(url) {
  const resp = await fetch(url, { headers: { Accept: "application/json" }, cache: "no-store" });
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new Error(body.error || resp.status + " " + resp.statusText);
  return body;
}

// actJSON POSTs an operator action with a JSON body.
async function actJSON(url, body) {
  const resp = await fetch(url, {
    method: "POST",
    headers: { "X-Choreo-Console": "1", "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify(body),
  });
  const out = await resp.json().catch(() => ({}));
  return { ok: resp.ok, status: resp.status, body: out };
}

// act POSTs an operator action. The custom header is what the console
// requires of every act: another site's page cannot send it.
async function act(url) {
  const resp = await fetch(url, {
    method: "POST",
    headers: { "X-Choreo-Console": "1", "Content-Type": "application/json", Accept: "application/json" },
    body: "{}",
  });
  const body = await resp.json().catch(() => ({}));
  return { ok: resp.ok, status: resp.status, body };
}

const fmtTime = (t) => {
  if (!t) return "—";
  const d = new Date(t);
  return isNaN(d) ? String(t) : d.toLocaleString();
};
const path = (...parts) => parts.map(encodeURIComponent).join("/");

function setLive(ok, text) {
  const live = $("#live");
  live.className = "live " + (ok ? "on" : "off");
  live.textContent = text;
}

function banner(text) {
  const b = $("#banner");
  b.hidden = !text;
  b.textContent = text || "";
}

// ---- routing: #flows[/FLOW[/vN]], #dead, #parked, #scheduled, #search[/CONDS[/STATUS]], #saga/FLOW/ID ----

let timer = null;

function route() {
  clearInterval(timer);
  timer = null;
  banner("");
  const parts = location.hash.replace(/^#/, "").split("/").map(decodeURIComponent);
  const page = ["flows", "dead", "parked", "scheduled", "search", "saga", "bulk"].includes(parts[0]) ? parts[0] : "flows";
  for (const p of document.querySelectorAll(".page")) p.hidden = p.id !== "page-" + page;
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.id === "nav-" + page);
  const every = (ms, fn) => {
    fn();
    timer = setInterval(fn, ms);
  };
  switch (page) {
    case "flows":
      showFlows(parts[1], parts[2]).then(() => every(1500, refreshCounts));
      break;
    case "dead":
      every(4000, loadDead);
      break;
    case "parked":
      every(2000, loadParked);
      break;
    case "scheduled":
      every(2000, loadScheduled);
      break;
    case "search":
      showSearch(parts[1], parts[2]);
      break;
    case "saga":
      every(2000, () => loadSaga(parts[1], parts[2]));
      break;
    case "bulk":
      every(1000, loadBulk);
      break;
  }
}

// ---- flows ----

let flows = [];
let current = null; // the flow version drawn

async function showFlows(name, version) {
  try {
    flows = await getJSON("api/flows");
    setLive(true, "live");
  } catch (e) {
    setLive(false, "error");
    banner("flows: " + e.message);
    return;
  }
  const list = $("#flow-list");
  list.replaceChildren();
  if (flows.length === 0) {
    list.append(el("p", { class: "hint" }, "No flow registered: no runner has started yet."));
  }
  const want = Number(String(version || "").replace(/^v/, ""));
  // Opens on the version the server marks (the newest with sagas in
  // flight, else the newest), not on the oldest.
  const opening = flows.find((f) => f.name === name && f.open) || flows.find((f) => f.open) || flows[flows.length - 1] || null;
  current = flows.find((f) => f.name === name && f.version === want) || current || opening;
  if (current) current = flows.find((f) => f.name === current.name && f.version === current.version) || opening;
  for (const f of flows) {
    const total = Object.values(f.sagas || {}).reduce((a, b) => a + b, 0);
    const totals = [f.steps.length + " steps", total + (total === 1 ? " saga" : " sagas")];
    if (f.in_flight) totals.push(f.in_flight + " in flight");
    if (f.status && f.status !== "active") totals.push(f.status);
    const b = el("a", { class: "flow-pick", href: "#flows/" + path(f.name, "v" + f.version), "data-flow": f.name, "data-version": f.version },
      el("b", null, f.name), " v" + f.version, el("small", { class: "totals" }, totals.join(" · ")));
    if (current && f.name === current.name && f.version === current.version) b.classList.add("selected");
    list.append(b);
  }
  drawFlow();
}

function drawFlow() {
  const card = $("#flow-card");
  card.hidden = !current;
  if (!current) return;
  const f = current;
  $("#flow-title").textContent = f.name + " v" + f.version;
  const meta = ["starts with " + (f.input || "?")];
  if (f.started_by && f.started_by.length) meta.push("started by " + f.started_by.join(", "));
  if (f.deadline) meta.push("deadline " + f.deadline);
  $("#flow-meta").textContent = meta.join(" · ");
  const drawing = $("#flow-drawing");
  drawing.replaceChildren();
  drawing.dataset.flow = f.name;
  drawing.dataset.version = f.version;
  const positions = [];
  for (const s of f.steps) (positions[s.position] = positions[s.position] || []).push(s);
  drawing.append(el("div", { class: "node terminal" }, el("b", null, "start")));
  for (const pos of positions) {
    if (!pos) continue;
    drawing.append(el("div", { class: "arrow" }, "→"));
    const col = el("div", { class: "pos" + (pos.length > 1 ? " parallel" : "") });
    for (const s of pos) {
      const node = el("div", { class: "node " + (s.kind || ""), "data-step": s.name },
        el("b", null, s.name),
        el("small", null, s.owner || "owner undeclared"));
      if (s.kind === "pivot") node.append(el("span", { class: "mark" }, "pivot: no return"));
      if (s.kind === "retriable") node.append(el("span", { class: "mark" }, "retried until it succeeds"));
      if (s.kind === "compensatable") node.append(el("span", { class: "undo" }, "↺ " + (s.undo || "compensate")));
      const counts = el("div", { class: "counts" });
      for (const k of ["running", "unserved", "waiting", "failed", "compensating", "compensated", "parked", "completed"]) {
        counts.append(el("span", { class: "count " + k + " zero", "data-kind": k, title: k }, el("b", null, "0"), " " + k));
      }
      node.append(counts);
      col.append(node);
    }
    drawing.append(col);
  }
  drawing.append(el("div", { class: "arrow" }, "→"), el("div", { class: "node terminal" }, el("b", null, "completed")));
}

async function refreshCounts() {
  if (!current) return;
  const f = current;
  let c;
  try {
    c = await getJSON("api/flows/" + path(f.name, "v" + f.version) + "/counts");
  } catch (e) {
    setLive(false, "error");
    banner("counts: " + e.message);
    return;
  }
  if (current !== f) return;
  banner("");
  setLive(true, "live · " + new Date().toLocaleTimeString());
  for (const s of c.steps || []) {
    const node = [...document.querySelectorAll("#flow-drawing .node")].find((n) => n.dataset.step === s.step);
    if (!node) continue;
    for (const span of node.querySelectorAll(".count")) {
      const n = s[span.dataset.kind] || 0;
      span.querySelector("b").textContent = n;
      span.classList.toggle("zero", n === 0);
    }
  }
  const sagas = Object.entries(c.sagas || {}).map(([k, v]) => v + " " + k);
  $("#flow-sagas").textContent = "Sagas of this version: " + (sagas.length ? sagas.join(" · ") : "none yet");
}

// ---- dead letters ----

const deadOutcomes = new Map(); // sequence -> {ok, text}: kept across reloads

async function loadDead() {
  let d;
  try {
    d = await getJSON("api/deadletters");
    setLive(true, "live · " + new Date().toLocaleTimeString());
  } catch (e) {
    setLive(false, "error");
    banner("dead letters: " + e.message);
    return;
  }
  const rows = d.dead_letters || [];
  $("#dead-count").textContent = d.total || "";
  $("#dead-total").textContent = d.total > rows.length ? d.total + " (the newest " + rows.length + " shown)" : String(d.total);
  $("#dead-empty").hidden = rows.length > 0;
  const body = $("#dead-table tbody");
  body.replaceChildren();
  for (const r of rows) {
    const button = el("button", { class: "replay", type: "button", "data-seq": r.sequence }, "Replay");
    const outcome = el("div", { class: "outcome" });
    const o = deadOutcomes.get(r.sequence);
    if (o) {
      outcome.textContent = o.text;
      outcome.classList.add(o.ok ? "ok" : "refused");
    }
    button.addEventListener("click", () => replay(r.sequence, button, outcome));
    body.append(el("tr", { class: "dead-row", "data-seq": r.sequence },
      el("td", { class: "c-seq" }, r.sequence),
      el("td", { class: "c-when" }, fmtTime(r.time)),
      el("td", { class: "subject" }, r.subject || "—", r.consumer ? el("small", null, "read by " + r.consumer) : null),
      el("td", { class: "reason" }, r.reason || "—", el("small", null, "written by " + (r.writer === "_" ? "admin/unnamed" : r.writer || "unknown"))),
      el("td", null, el("code", { class: "preview" }, r.preview), el("small", null, r.size + " bytes")),
      el("td", { class: "c-act" }, button, outcome)));
  }
}

async function replay(seq, button, outcome) {
  button.disabled = true;
  outcome.className = "outcome";
  outcome.textContent = "replaying…";
  let res;
  try {
    res = await act("api/deadletters/" + encodeURIComponent(seq) + "/replay");
  } catch (e) {
    res = { ok: false, body: { error: e.message } };
  }
  const o = res.ok ? { ok: true, text: "replayed: " + res.body.replayed } : { ok: false, text: "refused: " + (res.body.error || res.status) };
  deadOutcomes.set(seq, o);
  outcome.textContent = o.text;
  outcome.classList.add(o.ok ? "ok" : "refused");
  button.disabled = false;
}

// ---- parked sagas ----

async function loadParked() {
  let list;
  try {
    list = await getJSON("api/parked");
    setLive(true, "live · " + new Date().toLocaleTimeString());
  } catch (e) {
    setLive(false, "error");
    banner("parked sagas: " + e.message);
    return;
  }
  $("#parked-count").textContent = list.length || "";
  $("#parked-empty").hidden = list.length > 0;
  const body = $("#parked-table tbody");
  body.replaceChildren();
  for (const p of list) {
    const button = el("button", { class: "retry", type: "button" }, "Retry");
    const outcome = el("div", { class: "outcome" });
    button.addEventListener("click", () => retry(p, button, outcome));
    const failed = el("ul", { class: "failed" });
    for (const s of p.failed) failed.append(el("li", null, el("b", null, s.step), " after " + s.attempts + " attempts: ", s.error || "—"));
    body.append(el("tr", { class: "parked-row", "data-flow": p.flow, "data-id": p.id },
      el("td", null, el("a", { href: "#saga/" + path(p.flow, p.id) }, p.id), el("small", null, p.flow + " v" + p.version + (p.epoch ? " · retried " + p.epoch + "×" : ""))),
      el("td", { class: "c-when" }, fmtTime(p.updated_at)),
      el("td", { class: "reason" }, p.reason || "—"),
      el("td", null, failed),
      el("td", { class: "c-act" }, button, outcome)));
  }
}

async function retry(p, button, outcome) {
  button.disabled = true;
  outcome.textContent = "retrying…";
  let res;
  try {
    res = await act("api/sagas/" + path(p.flow, p.id) + "/retry");
  } catch (e) {
    res = { ok: false, body: { error: e.message } };
  }
  const text = res.ok ? res.body.retried : "refused: " + (res.body.error || res.status);
  outcome.textContent = text;
  outcome.className = "outcome " + (res.ok ? "ok" : "refused");
  // The row leaves the list once the saga is no longer parked: the result
  // stays above it.
  const r = $("#parked-result");
  r.hidden = false;
  r.className = "result " + (res.ok ? "ok" : "refused");
  r.dataset.id = p.id;
  r.replaceChildren(el("a", { href: "#saga/" + path(p.flow, p.id) }, p.flow + "/" + p.id), ": " + text);
  button.disabled = false;
  if (res.ok) loadParked();
}

// ---- scheduled sagas ----

async function loadScheduled() {
  let list;
  try {
    list = await getJSON("api/scheduled");
    setLive(true, "live · " + new Date().toLocaleTimeString());
  } catch (e) {
    setLive(false, "error");
    banner("scheduled sagas: " + e.message);
    return;
  }
  $("#scheduled-count").textContent = list.length || "";
  $("#scheduled-empty").hidden = list.length > 0;
  const body = $("#scheduled-table tbody");
  body.replaceChildren();
  for (const s of list) {
    body.append(el("tr", { class: "scheduled-row", "data-flow": s.flow, "data-id": s.id },
      el("td", null, el("a", { href: "#saga/" + path(s.flow, s.id) }, s.id), el("small", null, s.flow + " v" + s.version)),
      el("td", { class: "c-when" }, fmtTime(s.scheduled)),
      el("td", { class: "c-when" }, fmtTime(s.started_at))));
  }
}

// ---- one saga ----

async function loadSaga(flow, id) {
  let d;
  try {
    d = await getJSON("api/sagas/" + path(flow || "", id || ""));
    setLive(true, "live · " + new Date().toLocaleTimeString());
  } catch (e) {
    setLive(false, "error");
    banner("saga " + flow + "/" + id + ": " + e.message);
    return;
  }
  const st = d.state;
  $("#saga-title").replaceChildren("Saga ", el("span", { class: "status " + st.status, id: "saga-status" }, st.status), " " + st.flow + "/" + st.id);
  const fields = $("#saga-fields");
  fields.replaceChildren();
  const field = (k, v) => v && fields.append(el("dt", null, k), el("dd", null, v));
  field("version", "v" + st.version);
  field("reason", st.reason);
  field(st.status === "scheduled" ? "begins" : "scheduled for", st.scheduled && fmtTime(st.scheduled));
  field("started", fmtTime(st.started_at));
  field("updated", fmtTime(st.updated_at));
  field("ended", st.ended_at && fmtTime(st.ended_at));
  field("deadline", st.deadline && fmtTime(st.deadline));
  field("operator retries", st.epoch && String(st.epoch));
  field("trace id", st.trace_id);
  field("attributes", st.attrs && Object.keys(st.attrs).sort().map((k) => k + "=" + st.attrs[k]).join("  "));
  if (st.paused) {
    fields.append(el("dt", null, "paused"), el("dd", { id: "saga-paused" },
      "by " + st.paused.by + " since " + fmtTime(st.paused.at) + ": " + (st.paused.reason || "")));
  }
  if (st.parent) {
    // A child saga: a link to the saga whose step started it.
    fields.append(el("dt", null, "parent"), el("dd", { id: "saga-parent" },
      el("a", { href: "#saga/" + path(st.parent.flow, st.parent.id) }, st.parent.flow + "/" + st.parent.id), " · step " + st.parent.step));
  }
  renderWaterfall(d.waterfall, st.flow + " v" + st.version); // waterfall.js
  const steps = $("#saga-steps tbody");
  steps.replaceChildren();
  for (const s of st.steps) {
    steps.append(el("tr", { "data-step": s.name, "data-status": s.status },
      el("td", null, s.name), el("td", null, el("span", { class: "status " + s.status }, s.unserved ? "waiting" : s.status)),
      el("td", null, (s.attempts || 0) + (s.compensation_attempts ? " + " + s.compensation_attempts + " undo" : "")),
      el("td", { class: "reason" }, s.waiting || s.error || (s.held ? "held by the saga's pause" : ""))));
  }
  const tl = $("#saga-timeline tbody");
  tl.replaceChildren();
  for (const e of d.timeline) {
    tl.append(el("tr", null, el("td", { class: "c-seq" }, e.sequence), el("td", { class: "c-when" }, fmtTime(e.time)),
      el("td", null, e.step + ":" + e.phase, e.type ? el("small", null, e.type) : null),
      el("td", null, e.status), el("td", { class: "reason" }, e.note || "")));
  }
}

// ---- search by attributes ----

// showSearch runs the search the page's address holds (#search/CONDS/STATUS),
// so that a search can be linked to and reloaded.
async function showSearch(q, status) {
  $("#search-q").value = q || "";
  $("#search-status").value = status || "";
  const body = $("#search-table tbody");
  body.replaceChildren();
  $("#search-total").textContent = "";
  if (!q) return;
  let d;
  try {
    d = await getJSON("api/search?" + new URLSearchParams({ q, status: status || "" }));
    setLive(true, "live · " + new Date().toLocaleTimeString());
  } catch (e) {
    banner("search: " + e.message);
    return;
  }
  $("#search-total").textContent = d.total === 1 ? "1 saga" : d.total + " sagas" + (d.total > d.sagas.length ? " (the newest " + d.sagas.length + " shown)" : "");
  for (const s of d.sagas) {
    const attrs = Object.keys(s.attrs || {}).sort().map((k) => k + "=" + s.attrs[k]).join("  ");
    body.append(el("tr", { class: "search-row", "data-flow": s.flow, "data-id": s.id },
      el("td", null, el("a", { href: "#saga/" + path(s.flow, s.id) }, s.id), el("small", null, s.flow + " v" + s.version)),
      el("td", null, el("span", { class: "status " + s.status }, s.status)),
      el("td", { class: "c-when" }, fmtTime(s.started_at)),
      el("td", null, attrs)));
  }
}

$("#search-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const q = $("#search-q").value.trim();
  const st = $("#search-status").value;
  const want = "#search/" + encodeURIComponent(q) + (st ? "/" + encodeURIComponent(st) : "");
  if (location.hash === want) route();
  else location.hash = want;
});
// ---- bulk acts ----

let bulkRunning = null; // the id of the act this page started, while it runs

// bulkSpec reads the form.
function bulkSpec() {
  const v = (id) => $(id).value.trim();
  return {
    action: v("#bulk-action"),
    flow: v("#bulk-flow"),
    version: Number(v("#bulk-version")) || 0,
    status: v("#bulk-status") ? [v("#bulk-status")] : [],
    step: v("#bulk-step"),
    since: v("#bulk-since"),
    where: v("#bulk-where").split(";").map((s) => s.trim()).filter(Boolean),
    reason: v("#bulk-reason"),
    rate: Number(v("#bulk-rate")) || 0,
  };
}

function bulkResult(ok, text) {
  const r = $("#bulk-result");
  r.hidden = false;
  r.className = "result " + (ok ? "ok" : "refused");
  r.textContent = text;
}

async function bulkPlan() {
  $("#bulk-start").disabled = true;
  const res = await actJSON("api/bulk/plan", bulkSpec());
  const table = $("#bulk-sample");
  const body = $("#bulk-sample tbody");
  body.replaceChildren();
  if (!res.ok) {
    table.hidden = true;
    bulkResult(false, "dry run refused: " + (res.body.error || res.status));
    return;
  }
  const plan = res.body;
  bulkResult(true, "dry run: " + plan.count + " saga(s) selected; nothing was changed." + (plan.count ? " Start acts on them." : ""));
  for (const s of plan.sample) {
    body.append(el("tr", { "data-id": s.id },
      el("td", null, el("a", { href: "#saga/" + path(s.flow, s.id) }, s.flow + "/" + s.id)), el("td", null, "v" + s.version),
      el("td", null, el("span", { class: "status " + s.status }, s.status)), el("td", null, (s.steps || []).join(", ")),
      el("td", { class: "c-when" }, fmtTime(s.started_at))));
  }
  table.hidden = plan.sample.length === 0;
  $("#bulk-start").disabled = plan.count === 0;
}

async function bulkStart() {
  $("#bulk-start").disabled = true;
  const res = await actJSON("api/bulk", bulkSpec());
  if (!res.ok) {
    bulkResult(false, "refused: " + (res.body.error || res.status));
    return;
  }
  bulkRunning = res.body.id;
  bulkResult(true, "bulk act " + bulkRunning + " started");
  $("#bulk-stop").hidden = false;
  loadBulk();
}

async function bulkStop() {
  if (!bulkRunning) return;
  const res = await act("api/bulk/" + path(bulkRunning) + "/stop");
  if (!res.ok) bulkResult(false, "stop refused: " + (res.body.error || res.status));
}

function showProgress(r) {
  $("#bulk-progress").hidden = false;
  const bar = $("#bulk-bar");
  const handled = r.done + r.skipped + r.failed;
  bar.max = Math.max(r.matched, 1);
  bar.value = r.matched ? handled : r.state === "running" ? 0 : 1;
  $("#bulk-progress-text").textContent = r.id + ": " + handled + "/" + r.matched + " · done " + r.done + " · skipped " + r.skipped +
    " · failed " + r.failed + " · " + r.state;
  if (r.state !== "running") {
    $("#bulk-stop").hidden = true;
    bulkRunning = null;
    bulkResult(r.failed === 0, "bulk act " + r.id + " " + r.state + ": done " + r.done + ", skipped " + r.skipped + ", failed " + r.failed);
  }
}

async function loadBulk() {
  let d;
  try {
    if (bulkRunning) showProgress(await getJSON("api/bulk/" + path(bulkRunning)));
    d = await getJSON("api/bulk");
    setLive(true, "live · " + new Date().toLocaleTimeString());
  } catch (e) {
    setLive(false, "error");
    banner("bulk acts: " + e.message);
    return;
  }
  const body = $("#bulk-table tbody");
  body.replaceChildren();
  for (const r of d.acts) {
    body.append(el("tr", { "data-id": r.id, "data-state": r.state },
      el("td", null, r.id), el("td", null, r.action), el("td", null, r.by), el("td", { class: "c-when" }, fmtTime(r.started)),
      el("td", null, el("span", { class: "status " + (r.state === "done" ? "completed" : r.state === "running" ? "running" : "failed") }, r.state)),
      el("td", null, r.matched), el("td", null, r.done), el("td", null, r.skipped), el("td", null, r.failed),
      el("td", { class: "reason" }, r.reason, ...(r.items || []).slice(0, 5).map((it) => el("small", null, it.flow + "/" + it.id + " " + it.outcome + ": " + (it.reason || ""))))));
  }
  $("#bulk-empty").hidden = d.acts.length > 0;
  const pb = $("#pause-table tbody");
  pb.replaceChildren();
  for (const p of d.pauses) {
    pb.append(el("tr", null, el("td", null, p.flow), el("td", null, "v" + p.version), el("td", null, p.step || "every step"),
      el("td", null, p.by), el("td", { class: "c-when" }, fmtTime(p.at)), el("td", { class: "reason" }, p.reason || "")));
  }
  $("#pause-empty").hidden = d.pauses.length > 0;
}

$("#bulk-plan").addEventListener("click", bulkPlan);
$("#bulk-start").addEventListener("click", bulkStart);
$("#bulk-stop").addEventListener("click", bulkStop);
// A changed form needs a dry run again before it may start.
$("#bulk-form").addEventListener("input", () => {
  $("#bulk-start").disabled = true;
});

$("#dead-refresh").addEventListener("click", loadDead);
window.addEventListener("hashchange", route);
// The badges in the menu: how many dead letters, parked and scheduled sagas there are.
async function badges() {
  try {
    const [d, p, s] = await Promise.all([getJSON("api/deadletters"), getJSON("api/parked"), getJSON("api/scheduled")]);
    $("#dead-count").textContent = d.total || "";
    $("#parked-count").textContent = p.length || "";
    $("#scheduled-count").textContent = s.length || "";
  } catch (e) {
    /* the page in view says what is wrong */
  }
}
route();
badges();
setInterval(badges, 10000);
