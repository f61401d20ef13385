// blaze-cluster console: the cluster, live, from the console service's JSON API and its
// Server-Sent Events. No framework, no build: each view re-renders in one pass (one
// innerHTML per view), and clicks are handled by delegation, never per camera.
"use strict";

const EVENTS_KEPT = 300;
const COMPACT_FROM = 24; // servers: above this, smaller cards and cells
const NAMES_SHOWN = 12; // camera names listed per what-if destination
const SERVER_LABEL = {
  online: "online",
  network_failed: "network failed",
  storage_failed: "storage failed",
  failing_back: "failing back",
};
const CAMERA_LABEL = { home: "home", failed_over: "failed over", moving: "moving", pending: "pending" };
// Events that say something to an operator; the rest (per camera, confirmations,
// progress) show under "every event".
const MAIN_EVENTS = new Set([
  "server_failed", "server_recovered", "server_silent", "storage_repaired",
  "failback_confirmed", "failback_started", "failback_completed", "capacity_changed",
  "server_drained", "server_undrained", "drain_completed", "failovers_held",
  "command_refused", "camera_pending", "camera_preempted", "sync_started",
  "sync_completed", "sync_failed",
]);
const EVENT_TONE = {
  server_failed: "bad", server_silent: "bad", failovers_held: "bad", command_refused: "bad",
  camera_pending: "bad", camera_preempted: "bad", sync_failed: "bad",
  server_recovered: "good", storage_repaired: "good", failback_completed: "good",
  sync_completed: "good", claims_confirmed: "info", releases_confirmed: "info",
  sync_progress: "info", failback_confirmed: "admin", capacity_changed: "admin",
  server_drained: "admin", server_undrained: "admin", drain_completed: "admin",
  camera_move_planned: "move", camera_moved: "move", failback_started: "move",
  sync_started: "move",
};

const view = {
  status: null, // GET /api/status
  whatif: null, // GET /api/whatif/{server}
  whatifServer: "",
  sync: null,
  events: [], // newest last
  filter: "",
  confirming: null, // the server whose failback dialog is open
};

const $ = (id) => document.getElementById(id);
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => (
  { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));

async function getJSON(url, onHeaders) {
  const response = await fetch(url, { cache: "no-store" });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || body.reason || `${response.status} ${response.statusText}`);
  if (onHeaders) onHeaders(response.headers);
  return body;
}

// At most one call of fn in flight; calls meanwhile make one more run after it, no sooner
// than gapMs after the last started: a burst of events costs two fetches, not hundreds.
function throttled(fn, gapMs) {
  let running = false;
  let again = false;
  let last = 0;
  return async function run() {
    if (running) { again = true; return; }
    running = true;
    again = false;
    const wait = last + gapMs - Date.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    last = Date.now();
    try { await fn(); } catch (e) { console.error(e); }
    running = false;
    if (again) run();
  };
}

function once(fn) { // run fn at the next frame, however often asked before
  let queued = false;
  return () => {
    if (queued) return;
    queued = true;
    requestAnimationFrame(() => { queued = false; fn(); });
  };
}

function banner(text) {
  $("banner").hidden = !text;
  $("banner").textContent = text || "";
}

let toastTimer = 0;
function toast(text, refused) {
  const t = $("toast");
  t.textContent = text;
  t.className = refused ? "toast refused" : "toast";
  t.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { t.hidden = true; }, 6000);
}

// ---- the cluster -------------------------------------------------------------------------

const refreshStatus = throttled(async () => {
  try {
    let stale = "";
    view.status = await getJSON("/api/status", (h) => { stale = h.get("X-Blaze-Stale") || ""; });
    banner(stale ? `Showing the last state read: ${stale}` : "");
  } catch (e) {
    banner(`Cluster status unavailable: ${e.message}`);
    return;
  }
  renderCluster();
  if (view.whatifServer) refreshWhatif();
}, 250);

function renderCluster() {
  const doc = view.status;
  if (!doc) return;
  const started = performance.now();
  document.body.classList.toggle("compact", doc.servers.length > COMPACT_FROM);
  renderSummary(doc);
  renderServers(doc);
  renderWhatifChoices(doc);
  renderProcesses(doc);
  if (view.confirming) renderConfirm();
  // How long a whole render took, layout included, for the scale test (100 servers,
  // 5,000 cameras).
  void $("servers").offsetHeight;
  document.body.dataset.renderMs = (performance.now() - started).toFixed(1);
  document.body.dataset.revision = doc.revision;
}

function count(items, key) {
  const counts = {};
  for (const item of items) counts[item[key]] = (counts[item[key]] || 0) + 1;
  return counts;
}

function renderSummary(doc) {
  const servers = count(doc.servers, "state");
  const cameras = count(doc.cameras, "state");
  const serverParts = Object.keys(SERVER_LABEL).filter((s) => servers[s]).map((s) =>
    `<span class="${s === "online" ? "" : "bad"}">${servers[s]} ${SERVER_LABEL[s]}</span>`);
  const cameraParts = Object.keys(CAMERA_LABEL).map((s) =>
    `${cameras[s] || 0} ${CAMERA_LABEL[s]}`);
  const leaders = Object.entries(doc.leaders || {}).map(([k, v]) => `${esc(k)}=${esc(v)}`);
  $("summary").innerHTML =
    `<b>${doc.servers.length.toLocaleString("en")} servers</b>: ${serverParts.join(", ")} · ` +
    `<b>${doc.cameras.length.toLocaleString("en")} cameras</b>: ${cameraParts.join(", ")}` +
    (leaders.length ? ` · leaders ${leaders.join(", ")}` : "");
}

function cameraTitle(c) {
  const where = c.host === null ? "waiting for a channel (Pending)"
    : c.state === "moving" ? `moving to ${c.host}` : `recording on ${c.host}`;
  let title = `${c.id}: home ${c.home}, ${where}, ${CAMERA_LABEL[c.state]}, priority ${c.priority}`;
  if (c.releasing_on && c.releasing_on.length) title += `, releasing on ${c.releasing_on.join(", ")}`;
  if (c.preempted_by) title += `, preempted by ${c.preempted_by}`;
  return title;
}

function cell(c, marks) {
  let cls = `cam s-${c.state}`;
  const mark = marks.get(c.id);
  if (mark) cls += ` ${mark}`;
  if (view.filter && (c.id.includes(view.filter) || c.home.includes(view.filter))) cls += " hit";
  return `<i class="${cls}" data-camera="${esc(c.id)}" title="${esc(cameraTitle(c))}"></i>`;
}

function whatifMarks() {
  const marks = new Map();
  if (!view.whatif) return marks;
  for (const m of view.whatif.moves) marks.set(m.camera, "wi-move");
  for (const p of view.whatif.pending) marks.set(p.camera, "wi-pending");
  return marks;
}

function renderServers(doc) {
  const hosted = new Map(doc.servers.map((s) => [s.id, []]));
  const away = new Map(); // home -> Map(host -> cameras there)
  const pending = [];
  for (const c of doc.cameras) {
    if (c.host === null || !hosted.has(c.host)) pending.push(c);
    else hosted.get(c.host).push(c);
    if (c.host !== null && c.host !== c.home) {
      if (!away.has(c.home)) away.set(c.home, new Map());
      const hosts = away.get(c.home);
      hosts.set(c.host, (hosts.get(c.host) || 0) + 1);
    }
  }
  const marks = whatifMarks();
  const parts = [];
  for (const s of doc.servers) parts.push(serverCard(s, hosted.get(s.id), away.get(s.id), marks));
  const grid = $("servers");
  grid.classList.toggle("filtering", Boolean(view.filter));
  grid.innerHTML = parts.join("");
  const box = $("pending");
  box.hidden = pending.length === 0;
  box.classList.toggle("filtering", Boolean(view.filter));
  box.innerHTML = pending.length
    ? `<h3>${pending.length} Pending: waiting for a free channel</h3><div class="cells">${
      pending.map((c) => cell(c, marks)).join("")}</div>`
    : "";
}

function serverCard(s, cameras, away, marks) {
  const share = s.capacity > 0 ? Math.min(100, (100 * s.hosting) / s.capacity) : (s.hosting ? 100 : 0);
  const fill = s.hosting > s.capacity ? "over" : s.hosting === s.capacity ? "full" : "";
  const hit = view.filter && s.id.includes(view.filter) ? " hit" : "";
  const drained = s.drained ? " drained" : "";
  const storage = s.storage === "ok" ? "storage ok" : `<span class="failed">storage ${esc(s.storage)}</span>`;
  let awayLine = "";
  if (away && away.size) {
    const total = [...away.values()].reduce((a, b) => a + b, 0);
    const where = [...away.entries()].sort().map(([h, n]) => `${esc(h)} ${n}`).join(", ");
    awayLine = `<div class="away">${total} of its cameras away: ${where}</div>`;
  }
  let actions = `<button type="button" data-action="whatif" data-server="${esc(s.id)}">what if it fails</button>`;
  if (s.state === "storage_failed") {
    actions += `<button type="button" class="primary" data-action="failback" data-server="${esc(s.id)}">storage repaired — return cameras</button>`;
    if (s.storage !== "ok") actions += `<span class="hint">storage still reports failed</span>`;
  }
  return `<article class="server st-${esc(s.state)}${drained}${hit}" data-server="${esc(s.id)}">` +
    `<header><b class="name">${esc(s.id)}</b><span class="load">${s.hosting}/${s.capacity}</span>` +
    `<span class="badge">${esc(SERVER_LABEL[s.state] || s.state)}${s.drained ? ", drained" : ""}</span></header>` +
    `<div class="meta">${esc(s.site)} / ${esc(s.group)} · ${storage}</div>` +
    `<div class="bar ${fill}" title="${s.hosting} of ${s.capacity} channels in use"><span style="width:${share.toFixed(1)}%"></span></div>` +
    `<div class="barlabel">${s.hosting} / ${s.capacity} channels</div>` +
    `<div class="cells">${cameras.map((c) => cell(c, marks)).join("")}</div>` +
    awayLine +
    `<footer>${actions}</footer></article>`;
}

function renderProcesses(doc) {
  const procs = doc.services || [];
  $("processes").innerHTML = procs.length
    ? "processes: " + procs.map((p) => {
      const restarted = p.restarts ? ` <span class="restarted">restarted ${p.restarts}×</span>` : "";
      return `${esc(p.name)} (${p.pid === null ? "down" : `pid ${p.pid}`})${restarted}`;
    }).join(", ")
    : "";
}

function showCamera(id) {
  const c = view.status && view.status.cameras.find((x) => x.id === id);
  $("picked").innerHTML = c ? `<b>${esc(c.id)}</b> ${esc(cameraTitle(c).slice(c.id.length + 2))}, epoch ${c.epoch}` : "";
}

// ---- what-if ---------------------------------------------------------------------------------

function renderWhatifChoices(doc) {
  const select = $("whatif-server");
  const ids = doc.servers.map((s) => s.id);
  const have = [...select.options].slice(1).map((o) => o.value);
  if (have.join("\n") === ids.join("\n")) return;
  select.innerHTML = `<option value="">choose a server…</option>` +
    ids.map((id) => `<option value="${esc(id)}">${esc(id)}</option>`).join("");
  select.value = view.whatifServer;
}

const refreshWhatif = throttled(async () => {
  const server = view.whatifServer;
  if (!server) return;
  try {
    const doc = await getJSON(`/api/whatif/${encodeURIComponent(server)}`);
    if (server !== view.whatifServer) return;
    view.whatif = doc;
    $("whatif-result").innerHTML = whatifHTML(doc);
  } catch (e) {
    view.whatif = null;
    $("whatif-result").innerHTML = `<p class="muted">${esc(e.message)}</p>`;
  }
  if (view.status) renderServers(view.status);
}, 1000);

function names(list) {
  const shown = list.slice(0, NAMES_SHOWN).map(esc).join(", ");
  return list.length > NAMES_SHOWN ? `${shown} and ${list.length - NAMES_SHOWN} more` : shown;
}

function whatifHTML(doc) {
  const byTarget = new Map();
  for (const m of doc.moves) {
    if (!byTarget.has(m.to)) byTarget.set(m.to, []);
    byTarget.get(m.to).push(m.camera);
  }
  const items = [...byTarget.entries()].sort().map(([to, cams]) =>
    `<li><span class="to">→ ${esc(to)}</span> (${cams.length}): ${names(cams)}</li>`);
  if (doc.pending.length) {
    items.push(`<li><span class="p">Pending</span> (${doc.pending.length}): ${names(doc.pending.map((p) => p.camera))}</li>`);
  }
  for (const p of doc.preempted) {
    items.push(`<li><span class="p">preempted</span> ${esc(p.camera)} on ${esc(p.server)} by ${esc(p.by)}</li>`);
  }
  const headline = `If ${esc(doc.server)} failed now: ${doc.moves.length} cameras move, ` +
    `${doc.pending.length} go Pending, ${doc.preempted.length} preempted.`;
  return `<div class="headline">${headline}</div>` +
    (items.length ? `<ul>${items.join("")}</ul>` : `<p class="muted">It records no cameras now.</p>`) +
    `<p class="muted">Outlined on the left. The planner placement runs, on the state now.</p>`;
}

function chooseWhatif(server) {
  view.whatifServer = server;
  $("whatif-server").value = server;
  view.whatif = null;
  $("whatif-result").innerHTML = server ? `<p class="muted">working it out…</p>` : "";
  if (server) refreshWhatif();
  else if (view.status) renderServers(view.status);
}

// ---- the administrator's failback confirmation ------------------------------------------------

function openConfirm(server) {
  view.confirming = server;
  $("confirm-result").textContent = "";
  $("confirm-result").className = "result";
  $("confirm-go").disabled = false;
  renderConfirm();
  const dialog = $("confirm");
  if (!dialog.open) dialog.showModal();
}

function renderConfirm() {
  const server = view.confirming;
  const doc = view.status;
  const s = doc && doc.servers.find((x) => x.id === server);
  const away = doc ? doc.cameras.filter((c) => c.home === server && c.host !== server).length : 0;
  $("confirm-server").textContent = server;
  $("confirm-text").textContent =
    `${away} cameras whose home is ${server} record elsewhere or wait. Confirm only once its ` +
    "storage is repaired: they return home, and what they recorded meanwhile follows them.";
  const warn = $("confirm-warning");
  warn.hidden = !(s && s.storage !== "ok");
  warn.textContent = `${server} still reports failed storage: the cluster will refuse.`;
}

async function confirmFailback() {
  const server = view.confirming;
  const go = $("confirm-go");
  const result = $("confirm-result");
  go.disabled = true;
  result.className = "result";
  result.textContent = "asking the cluster…";
  let answer;
  try {
    const response = await fetch(`/api/failback/${encodeURIComponent(server)}`, {
      method: "POST", headers: { "X-Blaze-Console": "1" },
    });
    answer = await response.json();
  } catch (e) {
    answer = { ok: false, reason: `no answer from the console: ${e.message}` };
  }
  go.disabled = false;
  if (answer.ok) {
    closeConfirm();
    toast(answer.reason || `failback of ${server} confirmed`, false);
    refreshStatus();
  } else {
    result.className = "result refused";
    result.textContent = `Refused: ${answer.reason}`;
  }
}

function closeConfirm() {
  view.confirming = null;
  if ($("confirm").open) $("confirm").close();
}

// ---- footage sync -----------------------------------------------------------------------------

const refreshSync = throttled(async () => {
  try {
    view.sync = await getJSON("/api/sync");
    $("sync-result").innerHTML = syncHTML(view.sync);
  } catch (e) {
    $("sync-result").innerHTML = `<p class="muted">${esc(e.message)}</p>`;
  }
}, 1000);

function syncHTML(doc) {
  if (!doc.servers.length) return `<p class="muted">No footage to sync: nothing was recorded away from home.</p>`;
  const rows = doc.servers.map((s) => {
    const share = s.segments_total ? (100 * s.segments_done) / s.segments_total : 100;
    const open = Object.entries(s.jobs).filter(([k]) => k !== "completed").reduce((a, [, n]) => a + n, 0);
    return `<div class="sync-row"><b>${esc(s.server)}</b>` +
      `<div class="bar"><span style="width:${share.toFixed(1)}%"></span></div>` +
      `<span class="label">${share.toFixed(1)}% · ${s.segments_done}/${s.segments_total} segments · ${open} jobs open</span></div>`;
  });
  const waiting = doc.jobs.filter((j) => j.state !== "completed");
  const jobs = waiting.slice(0, 10).map((j) =>
    `<li>${esc(j.camera)} ${esc(j.source)} → ${esc(j.home)}: ${esc(j.state)}${j.reason ? `, ${esc(j.reason)}` : ""}</li>`);
  if (waiting.length > 10) jobs.push(`<li>and ${waiting.length - 10} more</li>`);
  return rows.join("") + (jobs.length ? `<ul class="jobs">${jobs.join("")}</ul>` : "");
}

// ---- the event timeline -----------------------------------------------------------------------

function summaryOf(e) {
  const parts = [];
  for (const [k, v] of Object.entries(e)) {
    if (k === "seq" || k === "type" || k === "time" || k === "schema_version") continue;
    if (v === null || v === "") continue;
    if (Array.isArray(v)) parts.push(`${k}: ${v.length}`);
    else if (typeof v !== "object") parts.push(`${k}=${v}`);
  }
  return parts.join(", ");
}

const renderTimeline = once(() => {
  const all = $("event-filter").value === "all";
  const shown = [];
  for (let i = view.events.length - 1; i >= 0 && shown.length < 200; i--) {
    const e = view.events[i];
    if (!all && !MAIN_EVENTS.has(e.type)) continue;
    const time = String(e.time || "").slice(11, 23);
    shown.push(`<li class="${EVENT_TONE[e.type] || "bad"}" data-seq="${e.seq}">` +
      `<time datetime="${esc(e.time)}">${esc(time)}</time><span class="type">${esc(e.type)}</span>` +
      `${esc(summaryOf(e))}</li>`);
  }
  $("events").innerHTML = shown.length ? shown.join("") : `<li class="info muted">no events yet</li>`;
});

function onEvent(e) {
  const last = view.events.length ? view.events[view.events.length - 1].seq : 0;
  if (e.seq <= last) return; // a reconnect's history repeats what we have
  view.events.push(e);
  if (view.events.length > EVENTS_KEPT) view.events.splice(0, view.events.length - EVENTS_KEPT);
  renderTimeline();
  if (e.type.startsWith("sync_") || e.type === "failback_completed") refreshSync();
}

// ---- wiring -----------------------------------------------------------------------------------

function connect() {
  const source = new EventSource("/api/events");
  source.addEventListener("open", () => {
    $("live").className = "live on";
    $("live").textContent = "live";
    refreshStatus();
    refreshSync();
  });
  source.addEventListener("error", () => {
    $("live").className = "live off";
    $("live").textContent = "reconnecting";
  });
  source.addEventListener("event", (m) => onEvent(JSON.parse(m.data)));
  source.addEventListener("status", () => refreshStatus());
}

function wire() {
  const onClick = (ev) => {
    const button = ev.target.closest("button[data-action]");
    if (button) {
      const server = button.dataset.server;
      if (button.dataset.action === "failback") openConfirm(server);
      else if (button.dataset.action === "whatif") chooseWhatif(server);
      return;
    }
    const cam = ev.target.closest("[data-camera]");
    if (cam) showCamera(cam.dataset.camera);
  };
  $("servers").addEventListener("click", onClick);
  $("pending").addEventListener("click", onClick);
  $("whatif-server").addEventListener("change", (ev) => chooseWhatif(ev.target.value));
  $("whatif-clear").addEventListener("click", () => chooseWhatif(""));
  $("confirm-go").addEventListener("click", confirmFailback);
  $("confirm-cancel").addEventListener("click", closeConfirm);
  $("confirm").addEventListener("close", () => { view.confirming = null; });
  $("event-filter").addEventListener("change", renderTimeline);
  let typing = 0;
  $("filter").addEventListener("input", (ev) => {
    clearTimeout(typing);
    typing = setTimeout(() => {
      view.filter = ev.target.value.trim();
      if (view.status) renderServers(view.status);
    }, 150);
  });
}

wire();
renderTimeline();
connect();
