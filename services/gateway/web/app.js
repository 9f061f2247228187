"use strict";
// The shop's page: plain JavaScript, no framework, no CDN.
const $ = (sel) => document.querySelector(sel);
const orders = new Map(); // id -> order view
let catalog = [];
let selected = null;

const money = (cents, cur = "EUR") => (cents / 100).toFixed(2) + " " + cur;
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
const ms = (a, b) => (a && b ? Math.max(0, new Date(b) - new Date(a)) : null);
const customers = new Map(); // id -> profile, of the customers this browser holds a token for

// The customers this browser registered, with the token the shop gave
// each ({id, token, expires}), kept in localStorage: the token is what
// reads and acts for the customer, until it expires (30 days by default).
// A link /#token=… (from another browser) adds one.
const STORE = "choreo-shop.customers";
function held() {
  try {
    const list = JSON.parse(localStorage.getItem(STORE) || "[]");
    return Array.isArray(list) ? list.filter((c) => c && c.id && c.token && (!c.expires || new Date(c.expires) > new Date())) : [];
  } catch {
    return [];
  }
}
function hold(list) { localStorage.setItem(STORE, JSON.stringify(list)); }
function tokenOf(id) { return held().find((c) => c.id === id)?.token; }
const auth = (token) => (token ? { Authorization: "Bearer " + token } : {});

async function api(method, path, body, headers) {
  const res = await fetch(path, { method, headers: { ...(body ? { "Content-Type": "application/json" } : {}), ...headers }, body: body ? JSON.stringify(body) : undefined });
  const data = await res.json().catch(() => ({}));
  if (!res.ok) throw Object.assign(new Error(data.error || res.statusText), { status: res.status });
  return data;
}

// The idempotency key of the order being placed: the same while the same
// order is tried again after a failure (a response lost, the shop busy),
// so that trying again never places it twice; a new one for another order.
let orderKey = null;
function idempotencyKey(body) {
  const text = JSON.stringify(body);
  if (!orderKey || orderKey.body !== text) {
    const b = new Uint8Array(16);
    crypto.getRandomValues(b);
    orderKey = { body: text, key: Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("") };
  }
  return orderKey.key;
}

// loadCustomers reads the profile of each customer this browser holds a
// token for (a token the shop refuses, expired say, is dropped) and fills
// the customer select.
async function loadCustomers(pick) {
  const list = [];
  for (const c of held()) {
    try {
      const p = await api("GET", "/api/customers/" + encodeURIComponent(c.id), null, auth(c.token));
      customers.set(p.id, p);
      list.push(p);
    } catch (e) {
      if (e.status === 401 || e.status === 403) hold(held().filter((x) => x.id !== c.id));
    }
  }
  const sel = $("#customer-select");
  const keep = pick || sel.value;
  sel.innerHTML = '<option value="">— register one below —</option>';
  for (const c of list) {
    const o = document.createElement("option");
    o.value = c.id;
    o.textContent = `${c.name} · ${c.address.city}, ${c.address.country}`;
    sel.appendChild(o);
  }
  if (keep) sel.value = keep;
  if (!sel.value && list.length) sel.value = list[list.length - 1].id;
  if (!list.length) $("#new-customer-box").open = true;
  return list;
}

// The orders of every customer this browser holds, pushed live: the
// websocket says which tokens it follows (a browser cannot set its headers).
let socket = null;
function follow() {
  if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ tokens: held().map((c) => c.token) }));
}

async function loadCatalog() {
  try {
    ({ items: catalog } = await api("GET", "/api/catalog"));
  } catch (e) {
    $("#catalog").innerHTML = `<p class="error">Catalog unavailable: ${esc(e.message)}</p>`;
    return;
  }
  // Keep what the customer typed: a reload only refreshes the stock.
  const typed = new Map([...$("#catalog").querySelectorAll("input")].map((el) => [el.dataset.sku, el.value]));
  $("#catalog").innerHTML = catalog.map((p, i) => `
    <div class="product ${p.stock === 0 ? "soldout" : ""}">
      <div><b>${esc(p.name)}</b><small>${esc(p.sku)} · ${money(p.price)} · ${p.stock === null ? "stock not known yet" : esc(p.stock) + " in stock"}</small></div>
      <input type="number" min="0" max="1000" value="${esc(typed.get(p.sku) ?? (i === 0 ? 1 : 0))}" data-sku="${esc(p.sku)}" aria-label="quantity of ${esc(p.name)}">
    </div>`).join("");
  $("#catalog").querySelectorAll("input").forEach((el) => el.addEventListener("input", updateTotal));
  updateTotal();
}

function chosenItems() {
  return [...$("#catalog").querySelectorAll("input")]
    .map((el) => ({ sku: el.dataset.sku, qty: parseInt(el.value, 10) || 0 }))
    .filter((it) => it.qty > 0);
}

function updateTotal() {
  const total = chosenItems().reduce((sum, it) => sum + it.qty * (catalog.find((p) => p.sku === it.sku)?.price || 0), 0);
  $("#total").textContent = money(total);
}

async function loadFlow() {
  const f = await api("GET", "/api/flow");
  $("#flow-name").textContent = `${f.name} v${f.version}`;
  $("#flow").innerHTML = f.positions.map((pos) => `<div class="pos">${pos.map((s) => `
      <div class="node ${s.Pivot ? "pivot" : ""}"><b>${esc(s.Name)}</b><small>${esc(s.Service)}${s.Pivot ? " · pivot" : ""}</small>
      ${s.Compensation ? `<div class="undo">↺ ${esc(s.Compensation)}</div>` : ""}</div>`).join("")}</div>`)
    .join('<div class="arrow">→</div>');
}

function renderStats(s) {
  $("#s-orders").textContent = s.orders;
  $("#s-confirmed").textContent = s.orders_confirmed;
  $("#s-rejected").textContent = s.orders_rejected;
  $("#s-paid").textContent = s.payments_succeeded;
  $("#s-failed").textContent = s.payments_failed;
  $("#s-refunds").textContent = s.refunds;
  $("#s-revenue").textContent = (s.revenue / 100).toFixed(2);
}

function upsert(o, flash) {
  const prev = orders.get(o.id);
  // A GET's answer can arrive after a newer push: keep the newest view.
  if (!prev || (prev.rev ?? -1) <= (o.rev ?? -1)) {
    if (prev && !o.items && prev.items) o.items = prev.items;
    orders.set(o.id, o);
    renderOrders(flash ? o.id : null);
  }
  if (selected === o.id) renderTimeline(orders.get(o.id));
}

function renderOrders(flashId) {
  const list = [...orders.values()].sort((a, b) => new Date(b.placed_at) - new Date(a.placed_at));
  $("#orders-empty").style.display = list.length ? "none" : "";
  $("#orders").innerHTML = list.map((o) => {
    const cust = customers.get(o.customer_id);
    const steps = (o.saga?.steps || []).map((s) => `<span class="dot ${esc(s.status)}" title="${esc(s.name)}: ${esc(s.status)}"></span>`).join("");
    return `<tr class="order-row ${o.id === selected ? "selected" : ""} ${o.id === flashId ? "flash" : ""}" data-id="${esc(o.id)}" data-status="${esc(o.status)}">
      <td class="mono" title="${esc(o.id)}">${esc(o.id)}</td>
      <td>${esc(cust ? cust.name : o.customer_id)}</td>
      <td>${money(o.total || 0, o.currency || "EUR")}</td>
      <td><span class="badge status ${esc(o.status)}">${esc(o.status)}</span>${o.reason ? `<div class="reason">${esc(o.reason)}</div>` : ""}</td>
      <td><div class="steps">${steps}</div></td></tr>`;
  }).join("");
  $("#orders").querySelectorAll("tr").forEach((tr) => tr.addEventListener("click", () => select(tr.dataset.id)));
}

async function select(id) {
  selected = id;
  history.replaceState(null, "", "#order=" + encodeURIComponent(id)); // a link to this order
  renderOrders();
  $("#timeline-id").textContent = id;
  // The order's customer's token; for an order not listed yet, each held.
  const known = tokenOf(orders.get(id)?.customer_id);
  const tokens = known ? [known] : held().map((c) => c.token);
  let err = new Error("this order is not one of this browser's customers'");
  for (const token of tokens) {
    try {
      const o = await api("GET", "/api/orders/" + encodeURIComponent(id), null, auth(token));
      o.fetchedAt = Date.now();
      upsert(o);
      return;
    } catch (e) {
      err = e;
    }
  }
  $("#timeline").innerHTML = `<p class="error">${esc(err.message)}</p>`;
}

// dur writes milliseconds as "850 ms", "12 s" or "3 min 5 s".
const dur = (ms) => ms < 1000 ? `${ms} ms` : ms < 60000 ? `${Math.floor(ms / 1000)} s` : `${Math.floor(ms / 60000)} min ${Math.floor(ms / 1000) % 60} s`;

function renderTimeline(o) {
  const s = o.saga;
  if (!s) {
    $("#timeline").innerHTML = '<p class="empty">The saga has not started yet.</p>';
    return;
  }
  const head = `<div class="saga-status">Saga <span class="badge ${s.status === "completed" ? "confirmed" : s.status === "running" ? "pending" : "rejected"}">${esc(s.status)}</span>
    ${s.reason ? `<div class="reason">${esc(s.reason)}</div>` : ""}
    ${s.console ? `<a class="saga-console" href="${esc(s.console)}" target="_blank" rel="noopener noreferrer">see this saga as a waterfall in the operator console</a>` : ""}</div>`;
  const steps = [...s.steps].sort((a, b) => a.position - b.position).map((st) => {
    const d = ms(st.started_at, st.ended_at);
    const cd = ms(st.ended_at, st.compensated_at);
    // A running step is either taken by its service (working) or waits
    // for it (the service is stopped or busy): the API says which.
    const waiting = st.status === "running" && st.activity === "waiting";
    const label = st.status === "running" && st.activity ? st.activity : st.status;
    // A step completed later waits on someone outside (the customer's
    // confirmation of a big order's payment, the carrier) until its wait
    // times out: the countdown runs from wait_until (tick below).
    const outside = st.status === "waiting";
    const whom = st.waiting_on === "customer" ? "your confirmation" : `the ${esc(st.waiting_on || "outside world")}`;
    const meta = outside
      ? `waiting for ${whom} · <span class="countdown" data-until="${esc(st.wait_until || "")}">${left(st.wait_until)}</span>`
      : waiting
      ? `waiting for ${esc(st.service)} · ${dur((st.waiting_ms || 0) + (Date.now() - (o.fetchedAt || Date.now())))}`
      : st.status === "running" && st.activity === "working"
        ? `${esc(st.service)} is working on it${st.attempts ? ` · ${st.attempts} failed attempt${st.attempts > 1 ? "s" : ""}` : ""}`
        : `${st.attempts ? `${st.attempts} attempt${st.attempts > 1 ? "s" : ""}` : "not run"}${d !== null ? ` · ${d} ms` : ""}`;
    return `<div class="tl ${esc(st.status)} ${waiting ? "waiting" : ""}" data-step="${esc(st.name)}" data-activity="${esc(st.activity || "")}">
      <div class="head"><b>${esc(st.name)}</b><span class="badge step-status">${esc(label)}</span></div>
      <div class="meta">${meta}${st.position === 1 ? " · parallel" : ""}</div>
      ${outside && st.waiting_on === "customer" && st.name === "charge" ? `<button type="button" class="confirm-payment" data-order="${esc(o.id)}">confirm payment</button>` : ""}
      ${st.error ? `<div class="err">${esc(st.error)}</div>` : ""}
      ${st.compensated_at ? `<div class="comp">↺ compensated${cd !== null ? ` ${cd} ms later` : ""}${st.compensation_attempts > 1 ? ` after ${st.compensation_attempts} attempts` : ""}</div>` : ""}
    </div>`;
  }).join("");
  $("#timeline").innerHTML = head + steps;
}

// left writes the time until an RFC 3339 instant as "1:42 left".
function left(until) {
  const ms = Date.parse(until || "") - Date.now();
  if (!(ms > 0)) return "time is up";
  const sec = Math.ceil(ms / 1000);
  return `${Math.floor(sec / 60)}:${String(sec % 60).padStart(2, "0")} left`;
}

// The countdowns of waiting steps tick in place (the timeline is not
// drawn again, so a button under the pointer stays).
setInterval(() => {
  document.querySelectorAll(".countdown").forEach((el) => { el.textContent = left(el.dataset.until); });
}, 1000);

// "confirm payment": the customer confirms a big order's payment; the
// gateway hands it to payment, which charges the card and completes the
// saga's charge step (the push then shows it).
$("#timeline").addEventListener("click", async (ev) => {
  const btn = ev.target.closest(".confirm-payment");
  if (!btn) return;
  const id = btn.dataset.order;
  btn.disabled = true;
  try {
    await api("POST", "/api/orders/" + encodeURIComponent(id) + "/confirm-payment", {}, auth(tokenOf(orders.get(id)?.customer_id)));
    btn.textContent = "confirmed";
    select(id);
  } catch (e) {
    btn.disabled = false;
    $("#timeline").insertAdjacentHTML("beforeend", `<p class="error">${esc(e.message)}</p>`);
  }
});

// While the selected order's saga runs, ask again every 2 s: a service
// taking a waiting step writes no event, so nothing is pushed.
setInterval(() => {
  const o = selected && orders.get(selected);
  // (Not while steps only wait on someone outside: their wait is pushed.)
  if (o && o.saga && o.saga.status === "running" && o.saga.steps.some((st) => st.status === "running")) select(selected);
}, 2000);

function connect() {
  const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws");
  socket = ws;
  ws.onopen = () => { follow(); $("#live").className = "live on"; $("#live").textContent = "● live"; refresh(); };
  ws.onclose = () => { $("#live").className = "live off"; $("#live").textContent = "● offline"; setTimeout(connect, 1000); };
  ws.onmessage = (ev) => {
    const msg = JSON.parse(ev.data);
    if (msg.type === "order") upsert(msg.order, true);
    if (msg.type === "stats") renderStats(msg.stats);
  };
}

// The API answers a customer's orders a page at a time, newest first;
// "next" is where the older ones go on: one cursor per customer held.
let olderCursors = new Map(); // customer id -> cursor of its next page

async function loadOrders(older) {
  const next = new Map();
  for (const c of held()) {
    if (older && !olderCursors.has(c.id)) continue;
    const cursor = older ? olderCursors.get(c.id) : null;
    const page = await api("GET", "/api/orders" + (cursor ? "?cursor=" + encodeURIComponent(cursor) : ""), null, auth(c.token));
    for (const o of page.orders) {
      const prev = orders.get(o.id);
      if (!prev || (prev.rev ?? -1) <= (o.rev ?? -1)) orders.set(o.id, o);
    }
    if (page.next) next.set(c.id, page.next);
  }
  if (!older) olderCursors = next;
  else for (const [id, cur] of next) olderCursors.set(id, cur);
  if (older) for (const id of [...olderCursors.keys()]) if (!next.has(id)) olderCursors.delete(id);
  $("#more-orders").hidden = olderCursors.size === 0;
  renderOrders();
}

async function refresh() {
  const [, stats] = await Promise.all([loadOrders(), api("GET", "/api/stats")]);
  renderStats(stats);
}

$("#more-orders").addEventListener("click", () => {
  loadOrders(true).catch((e) => { $("#form-error").textContent = e.message; });
});

$("#new-customer").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const f = new FormData(ev.target);
  $("#form-error").textContent = "";
  try {
    const { id, token, token_expires_at: expires } = await api("POST", "/api/customers", {
      name: f.get("name"), email: f.get("email"),
      address: { line1: f.get("line1"), city: f.get("city"), postcode: f.get("postcode"), country: String(f.get("country")).toUpperCase() },
    });
    // The token is what reads and acts for this customer from now on.
    hold([...held().filter((c) => c.id !== id), { id, token, expires }]);
    follow();
    // The gateway learns the customer from its event: wait until it has.
    for (let i = 0; i < 50; i++) {
      await loadCustomers(id);
      if ($("#customer-select").value === id) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    $("#new-customer-box").open = false;
  } catch (e) {
    $("#form-error").textContent = e.message;
  }
});

document.querySelectorAll(".presets button").forEach((b) => b.addEventListener("click", () => { $("#card").value = b.dataset.card; }));

$("#place-order").addEventListener("click", async () => {
  const btn = $("#place-order");
  $("#form-error").textContent = "";
  btn.disabled = true;
  try {
    const body = { customer_id: $("#customer-select").value, items: chosenItems(), card: $("#card").value.trim() };
    if (!body.customer_id) throw new Error("register a customer first");
    const { id, status } = await api("POST", "/api/orders", body, { "Idempotency-Key": idempotencyKey(body), ...auth(tokenOf(body.customer_id)) });
    orderKey = null;
    if (!orders.has(id)) upsert({ id, status, customer_id: $("#customer-select").value, placed_at: new Date().toISOString(), total: 0 }, true);
    select(id);
    loadCatalog();
  } catch (e) {
    // Refused, or not placed (a 503 that says the key is spent): another
    // try is another order. Otherwise a try again repeats this one.
    if ((e.status && e.status < 500) || e.message.includes("send a new Idempotency-Key")) orderKey = null;
    $("#form-error").textContent = e.message;
  } finally {
    btn.disabled = false;
  }
});

// A link #token=…[&token=…][&order=…] hands this browser customers'
// tokens (and opens an order); the tokens leave the address at once.
function takeLink() {
  const link = new URLSearchParams(location.hash.slice(1));
  for (const token of link.getAll("token")) {
    const id = token.split(".")[1];
    if (id) hold([...held().filter((c) => c.id !== id), { id, token }]);
  }
  if (!link.has("token")) return false;
  history.replaceState(null, "", link.has("order") ? "#order=" + encodeURIComponent(link.get("order")) : location.pathname);
  return true;
}
takeLink();
// A link followed in this tab changes only the address's hash.
window.addEventListener("hashchange", () => {
  if (!takeLink()) return;
  follow();
  loadCustomers().then(refresh).then(() => {
    const m = location.hash.match(/^#order=(.+)$/);
    if (m) select(decodeURIComponent(m[1]));
  }).catch((e) => { $("#form-error").textContent = e.message; });
});

loadFlow();
loadCustomers().then(loadCatalog).then(refresh).then(() => {
  const m = location.hash.match(/^#order=(.+)$/);
  if (m) select(decodeURIComponent(m[1]));
}).catch((e) => { $("#form-error").textContent = e.message; });
connect();
