// The saga page's waterfall: the saga drawn over time from its log (the
// server computes the bars: saga/console/waterfall.go). A lane per step,
// named with the service that owns it; bars for each attempt of its
// action (a retry's bar includes its backoff), its wait on the outside
// world, each attempt of its compensation; marks for the failure, the
// deadline, an operator's act. Like console.js, it puts what it reads
// into the page only as text and attributes; positions go through CSSOM
// (element.style), which the Content-Security-Policy allows.
"use strict";

function renderWaterfall(w, flow) {
  const box = document.querySelector("#saga-waterfall");
  if (!box) return;
  box.replaceChildren();
  if (!w || !w.lanes) return;
  const mk = (tag, attrs, ...children) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v !== undefined && v !== null && v !== false) e.setAttribute(k, String(v));
    }
    for (const c of children) {
      if (c === undefined || c === null) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  };
  const link = (f, id) => "#saga/" + encodeURIComponent(f) + "/" + encodeURIComponent(id);
  const t0 = Date.parse(w.start);
  const span = Math.max(1, Date.parse(w.end) - t0);
  const pct = (t) => Math.min(100, Math.max(0, ((Date.parse(t) - t0) / span) * 100));
  const ms = (a, b) => {
    const d = Math.max(0, Date.parse(b) - Date.parse(a));
    return d < 1000 ? d + " ms" : d < 60000 ? (d / 1000).toFixed(1) + " s" : Math.floor(d / 60000) + " min " + Math.round((d % 60000) / 1000) + " s";
  };
  const at = (t) => "+" + ms(w.start, t);

  if (w.parent) {
    box.append(mk("p", { id: "wf-parent", class: "wf-parent" }, "child of ",
      mk("a", { href: link(w.parent.flow, w.parent.id) }, w.parent.flow + "/" + w.parent.id), " (its step " + w.parent.step + ")"));
  }
  const chart = mk("div", { class: "wf-chart" });
  const row = (name, label, step) => {
    const track = mk("div", { class: "wf-track" });
    chart.append(mk("div", { class: "wf-row", "data-step": step }, mk("div", { class: "wf-label" }, ...label), track));
    return track;
  };
  const place = (e, from, to) => {
    const left = pct(from);
    e.style.left = left + "%";
    if (to !== undefined) e.style.width = Math.max(0, pct(to) - left) + "%";
    return e;
  };
  const markOf = (m) => {
    const what = m.step + ":" + m.phase + " at " + at(m.time) + (m.note ? ": " + m.note : "");
    return place(mk("div", { class: "wf-mark" + (m.failure ? " failure" : ""), "data-phase": m.phase, title: what },
      m.failure ? "✕" : "◆", mk("span", { class: "wf-tip" }, m.failure ? (m.note || m.phase) : m.phase)), m.time);
  };

  // The saga-wide events: its start, a deadline, an operator's act.
  const sagaTrack = row("_saga", [mk("b", null, "saga"), mk("small", null, flow || "")], "_saga");
  for (const m of w.marks) if (m.step === "_saga") sagaTrack.append(markOf(m));

  for (const ln of w.lanes) {
    const label = [mk("b", null, ln.step), mk("small", { class: "wf-owner" }, ln.owner || "owner undeclared")];
    if (ln.child) {
      label.push(mk("small", { class: "wf-child" }, "runs ", mk("a", { href: link(ln.child.flow, ln.child.id) }, ln.child.flow + "/" + ln.child.id)));
    }
    const track = row(ln.step, label, ln.step);
    for (const b of ln.bars) {
      const cls = ["wf-bar", b.kind];
      if (b.failed) cls.push("failed");
      if (b.open) cls.push("open");
      const what = (b.kind === "compensation" ? "compensation" : b.kind === "waiting" ? "waiting" : "attempt") +
        (b.kind === "waiting" ? "" : " " + b.attempt) + ": " + at(b.start) + " → " + (b.open ? "now (under way)" : at(b.end) + ", " + b.outcome) +
        " (" + ms(b.start, b.end) + ")" + (b.note ? " · " + b.note : "");
      const text = b.kind === "retry" ? "#" + b.attempt : b.kind === "compensation" ? "↺" + (b.attempt > 1 ? b.attempt : "") : b.kind === "waiting" ? "…" : "";
      track.append(place(mk("div", { class: cls.join(" "), "data-kind": b.kind, "data-attempt": b.attempt, "data-outcome": b.outcome || "", title: what },
        mk("span", null, text)), b.start, b.end));
    }
    for (const m of w.marks) if (m.step === ln.step) track.append(markOf(m));
  }
  // The axis: the start, the middle, the end.
  const axis = mk("div", { class: "wf-axis" }, mk("span", null, "0"), mk("span", null, ms(w.start, new Date(t0 + span / 2).toISOString())),
    mk("span", null, ms(w.start, w.end)));
  chart.append(mk("div", { class: "wf-row wf-scale" }, mk("div", { class: "wf-label" }), axis));
  box.append(chart, mk("p", { class: "hint wf-legend" },
    mk("span", { class: "wf-key action" }), " action ", mk("span", { class: "wf-key retry" }, "#2"), " retry (its backoff included) ",
    mk("span", { class: "wf-key waiting" }), " waiting on the outside world ", mk("span", { class: "wf-key compensation" }), " compensation ",
    mk("span", { class: "wf-key failed" }), " failed ", mk("span", { class: "wf-mark-key" }, "✕"), " what made it compensate or park · hover a bar for its times"));
}
