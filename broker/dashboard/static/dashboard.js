// The operator dashboard: polls the broker's own APIs and draws what they answer. No library,
// no build step, nothing fetched from anywhere but this broker (and the tile server, if set).
"use strict";

const NGSI = "/ngsi-ld/v1";
const KEY = "ngsiDashboardKey";
const SDM = "https://raw.githubusercontent.com/smart-data-models/";
const CONTEXTS = {
  FloodMonitoring: SDM + "dataModel.Environment/master/context.jsonld",
  Vehicle: SDM + "dataModel.Transportation/master/context.jsonld",
  Device: SDM + "dataModel.Device/master/context.jsonld",
};
const W = 1000, H = 600, PAD = 40, SVGNS = "http://www.w3.org/2000/svg";
const TRACK_PLOWS = 50; // tracks are fetched for this many plows at most per refresh

const state = { config: null, tenant: null, timer: null, busy: false };
const $ = (id) => document.getElementById(id);

class NeedsKey extends Error {}

function headers(extra) {
  const out = Object.assign({ Accept: "application/json" }, extra || {});
  if (state.tenant !== null && state.tenant !== "") out["NGSILD-Tenant"] = state.tenant;
  const key = sessionStorage.getItem(KEY);
  if (key) out.Authorization = "Bearer " + key;
  return out;
}

async function call(path, { method = "GET", context = null } = {}) {
  const extra = context
    ? { Link: `<${context}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"` }
    : {};
  const response = await fetch(path, { method, headers: headers(extra) });
  if (response.status === 401 || response.status === 403) throw new NeedsKey(await response.text());
  const text = await response.text();
  const body = text ? JSON.parse(text) : null;
  return { status: response.status, body };
}

async function entities(type) {
  const { status, body } = await call(`${NGSI}/entities?type=${type}&limit=1000`, { context: CONTEXTS[type] });
  return status === 200 && Array.isArray(body) ? body : [];
}

// --- values of NGSI-LD attributes (normalized form)
function value(entity, name) {
  const attr = entity[name];
  if (attr === undefined || attr === null) return undefined;
  let v = typeof attr === "object" && "value" in attr ? attr.value : attr;
  if (v && typeof v === "object" && "@value" in v) v = v["@value"];
  return v;
}
function observedAt(entity, name) {
  const attr = entity[name];
  return attr && typeof attr === "object" ? attr.observedAt : undefined;
}
function num(v) {
  return typeof v === "number" && isFinite(v) ? v : undefined;
}

// Flood status of a FloodMonitoring gauge (the rule the README documents): danger from dangerLevel up,
// alert from alertLevel up (or the gauge's own floodLevelStatus, whichever is worse), observation
// start when the gauge is in flood observation mode (it passed its observationStartLevel), else normal.
const RANK = { unknown: 0, normal: 1, observation: 2, alert: 3, danger: 4 };
function floodStatus(gauge) {
  const level = num(value(gauge, "currentLevel"));
  const alert = num(value(gauge, "alertLevel"));
  const danger = num(value(gauge, "dangerLevel"));
  const reported = String(value(gauge, "floodLevelStatus") || "").toLowerCase();
  let status = level === undefined ? "unknown" : "normal";
  const raise = (s) => { if (RANK[s] > RANK[status]) status = s; };
  if (value(gauge, "observationMode") === "flood") raise("observation");
  if (reported === "alert") raise("alert");
  if (reported === "danger") raise("danger");
  if (level !== undefined && alert !== undefined && level >= alert) raise("alert");
  if (level !== undefined && danger !== undefined && level >= danger) raise("danger");
  return status;
}

// Silent: no message for silentFactor times the device's interval (its reportInterval in seconds, else
// the NGSI_DASHBOARD_DEVICE_INTERVAL default), measured on the broker's clock.
function silence(device, now) {
  const last = Date.parse(value(device, "dateLastValueReported") || "");
  const interval = num(value(device, "reportInterval")) || state.config.deviceIntervalSeconds;
  if (isNaN(last)) return { silent: true, last: null };
  return { silent: now - last > state.config.silentFactor * interval * 1000, last };
}

// --- map: Web Mercator, fitted to what is shown
function mercator([lon, lat]) {
  const s = Math.sin((Math.max(-85, Math.min(85, lat)) * Math.PI) / 180);
  return [(lon + 180) / 360, 0.5 - Math.log((1 + s) / (1 - s)) / (4 * Math.PI)];
}
function projection(points) {
  const xy = points.map(mercator);
  let [x0, y0, x1, y1] = [1, 1, 0, 0];
  for (const [x, y] of xy) { x0 = Math.min(x0, x); y0 = Math.min(y0, y); x1 = Math.max(x1, x); y1 = Math.max(y1, y); }
  if (!xy.length) { [x0, y0, x1, y1] = [0, 0, 1, 1]; }
  const span = Math.max(x1 - x0, y1 - y0, 1e-4); // about 4 km across at least
  const scale = Math.min((W - 2 * PAD) / span, (H - 2 * PAD) / span);
  const cx = (x0 + x1) / 2, cy = (y0 + y1) / 2;
  const to = (p) => { const [x, y] = mercator(p); return [W / 2 + (x - cx) * scale, H / 2 + (y - cy) * scale]; };
  return { to, scale, cx, cy };
}
function el(name, attrs, parent) {
  const node = document.createElementNS(SVGNS, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (parent) parent.appendChild(node);
  return node;
}
function drawTiles(proj) {
  const layer = $("tiles");
  layer.replaceChildren();
  const template = state.config.tiles;
  if (!template) return;
  const z = Math.max(0, Math.min(18, Math.round(Math.log2(proj.scale / 256))));
  const n = 2 ** z, size = proj.scale / n;
  const left = proj.cx - W / 2 / proj.scale, top = proj.cy - H / 2 / proj.scale;
  const tx0 = Math.max(0, Math.floor(left * n)), ty0 = Math.max(0, Math.floor(top * n));
  const tx1 = Math.min(n - 1, Math.floor((left + W / proj.scale) * n));
  const ty1 = Math.min(n - 1, Math.floor((top + H / proj.scale) * n));
  if ((tx1 - tx0 + 1) * (ty1 - ty0 + 1) > 64) return;
  for (let x = tx0; x <= tx1; x++) {
    for (let y = ty0; y <= ty1; y++) {
      const href = template.replace("{z}", z).replace("{x}", x).replace("{y}", y);
      const image = el("image", { href, x: W / 2 + (x / n - proj.cx) * proj.scale, y: H / 2 + (y / n - proj.cy) * proj.scale,
        width: size + 0.5, height: size + 0.5 }, layer);
      image.addEventListener("error", () => image.remove()); // unreachable: the plain background stays
    }
  }
}
function point(entity) {
  const loc = value(entity, "location");
  return loc && loc.type === "Point" && Array.isArray(loc.coordinates) ? loc.coordinates : null;
}
function drawMap(gauges, plows, tracks) {
  const shown = [...gauges, ...plows].filter(point);
  const all = shown.map(point);
  for (const track of Object.values(tracks)) all.push(...track);
  const proj = projection(all);
  drawTiles(proj);
  const markers = $("markers"), lines = $("tracks");
  markers.replaceChildren();
  lines.replaceChildren();
  for (const [id, track] of Object.entries(tracks)) {
    if (track.length > 1) el("polyline", { class: "track", "data-id": id, points: track.map((p) => proj.to(p).join(",")).join(" ") }, lines);
  }
  for (const gauge of gauges.filter(point)) {
    const [x, y] = proj.to(point(gauge));
    const status = floodStatus(gauge);
    const mark = el("circle", { class: `marker gauge status-${status}`, cx: x, cy: y, r: 9, "data-id": gauge.id, "data-status": status }, markers);
    el("title", {}, mark).textContent = `${gauge.id}: ${status} (${value(gauge, "currentLevel")} m)`;
  }
  for (const plow of plows.filter(point)) {
    const [x, y] = proj.to(point(plow));
    const mark = el("rect", { class: "marker plow", x: x - 6, y: y - 6, width: 12, height: 12, "data-id": plow.id }, markers);
    el("title", {}, mark).textContent = `${plow.id} (${value(plow, "speed") ?? "?"} km/h)`;
  }
  $("map-note").textContent = shown.length ? "" : "No gauge or snowplow with a location in this tenant.";
}

// --- tables
function cell(row, text, cls) {
  const td = document.createElement("td");
  td.textContent = text === undefined || text === null ? "–" : String(text);
  if (cls) td.className = cls;
  row.appendChild(td);
  return td;
}
function ago(ms, now) {
  if (ms === null || ms === undefined) return "never";
  const s = Math.round((now - ms) / 1000);
  if (s < 120) return `${s} s ago`;
  if (s < 7200) return `${Math.round(s / 60)} min ago`;
  if (s < 172800) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}
function short(id) {
  return String(id).replace(/^urn:ngsi-ld:[^:]+:/, "");
}
function drawGauges(gauges) {
  const body = $("gauges");
  body.replaceChildren();
  gauges.sort((a, b) => RANK[floodStatus(b)] - RANK[floodStatus(a)]);
  for (const gauge of gauges) {
    const tr = document.createElement("tr");
    tr.dataset.id = gauge.id;
    cell(tr, short(gauge.id)).title = gauge.id;
    cell(tr, value(gauge, "currentLevel"));
    cell(tr, `${value(gauge, "alertLevel") ?? "–"} / ${value(gauge, "dangerLevel") ?? "–"}`);
    const status = floodStatus(gauge);
    cell(tr, status, `pill status-${status}`);
    cell(tr, observedAt(gauge, "currentLevel"));
    body.appendChild(tr);
  }
}
function drawDevices(devices, now) {
  const body = $("devices");
  body.replaceChildren();
  const rows = devices.map((d) => ({ d, ...silence(d, now) }));
  rows.sort((a, b) => (b.silent - a.silent) || ((a.last ?? 0) - (b.last ?? 0)));
  for (const { d, silent, last } of rows) {
    const tr = document.createElement("tr");
    tr.dataset.id = d.id;
    if (silent) tr.className = "silent";
    cell(tr, short(d.id)).title = d.id;
    cell(tr, ago(last, now)).title = value(d, "dateLastValueReported") || "";
    const battery = num(value(d, "batteryLevel"));
    cell(tr, battery === undefined ? undefined : `${Math.round(battery * 100)} %`);
    cell(tr, value(d, "rssi"));
    cell(tr, value(d, "snr"));
    cell(tr, value(d, "deviceState"));
    body.appendChild(tr);
  }
  const c = state.config;
  $("silent-rule").textContent = `silent: no message in ${c.silentFactor} × its interval (default ${c.deviceIntervalSeconds} s)`;
}
function drawLetters(letters) {
  const body = $("letters");
  body.replaceChildren();
  for (const letter of letters) {
    const tr = document.createElement("tr");
    tr.dataset.id = letter.id;
    cell(tr, letter.id);
    cell(tr, letter.receivedAt);
    cell(tr, letter.family);
    cell(tr, letter.device);
    cell(tr, letter.reason, "reason");
    const actions = cell(tr, "");
    actions.textContent = "";
    const raw = document.createElement("button");
    raw.textContent = "raw";
    raw.className = "show-raw";
    raw.addEventListener("click", () => showRaw(letter.id));
    actions.appendChild(raw);
    if (letter.replayResult === "accepted") {
      tr.classList.add("replayed");
      actions.append(" replayed: accepted");
    } else {
      const replay = document.createElement("button");
      replay.textContent = "replay";
      replay.className = "replay";
      replay.addEventListener("click", () => replayLetter(letter.id, replay));
      actions.append(" ", replay);
      if (letter.replayResult) actions.append(` last replay: ${letter.replayResult}`);
    }
    body.appendChild(tr);
  }
}
async function showRaw(id) {
  const { body } = await call(`/admin/deadletters/${id}`);
  const pre = $("raw");
  pre.hidden = false;
  pre.textContent = body ? `#${id} ${JSON.stringify(body.headers || {})}\n${body.rawText ?? "(base64) " + body.raw}` : "";
}
async function replayLetter(id, button) {
  button.disabled = true;
  const { body } = await call(`/admin/deadletters/${id}/replay`, { method: "POST" });
  button.replaceWith(` ${body && body.result ? body.result : "not replayed"}`);
  refresh();
}
function drawSubscriptions(subscriptions) {
  const body = $("subscriptions");
  body.replaceChildren();
  for (const s of subscriptions) {
    const n = s.notification || {};
    const tr = document.createElement("tr");
    tr.dataset.id = s.id;
    cell(tr, s.subscriptionName || short(s.id)).title = s.id;
    cell(tr, s.status);
    cell(tr, n.lastSuccess);
    cell(tr, n.lastFailure);
    cell(tr, n.consecutiveErrors ?? 0);
    body.appendChild(tr);
  }
}
function drawBroker(health, ready) {
  const badge = $("broker-state");
  const up = ready && ready.status === "ready";
  badge.textContent = up ? "ready" : "not ready";
  badge.className = "badge " + (up ? "ready" : "down");
  const dl = $("broker");
  dl.replaceChildren();
  const add = (k, v, cls) => {
    const dt = document.createElement("dt"); dt.textContent = k;
    const dd = document.createElement("dd"); dd.textContent = String(v);
    if (cls) dd.className = cls;
    dl.append(dt, dd);
  };
  add("readiness", ready ? ready.status : "?", up ? "" : "error");
  if (ready && ready.database) add("database", ready.database);
  if (ready && ready.down) for (const [k, v] of Object.entries(ready.down)) add(`down: ${k}`, v, "error");
  // /health answers for the one worker process that took the request (pid).
  const flat = (prefix, v) => {
    if (v && typeof v === "object" && !Array.isArray(v)) {
      for (const [k, inner] of Object.entries(v)) flat(prefix ? `${prefix}.${k}` : k, inner);
    } else {
      add(prefix, Array.isArray(v) ? v.join(", ") : v);
    }
  };
  for (const [k, v] of Object.entries(health || {})) {
    if (k === "components" && v && typeof v === "object") {
      for (const [name, c] of Object.entries(v)) {
        const text = (c.running ? "running" : "DOWN") + (c.restarts ? `, ${c.restarts} restarts` : "") + (c.lastError ? `: ${c.lastError}` : "");
        add(`task ${name}`, text, c.running ? "" : "error");
      }
    } else {
      flat(k, v);
    }
  }
}

async function tracksOf(plows, now) {
  const since = new Date(now - 3600 * 1000).toISOString();
  const out = {};
  await Promise.all(plows.slice(0, TRACK_PLOWS).map(async (plow) => {
    const { status, body } = await call(
      `${NGSI}/temporal/entities/${encodeURIComponent(plow.id)}?attrs=location&timerel=after&timeAt=${since}`,
      { context: CONTEXTS.Vehicle });
    const instances = status === 200 && body ? [].concat(body.location || []) : [];
    out[plow.id] = instances
      .filter((i) => i.value && i.value.type === "Point")
      .sort((a, b) => String(a.observedAt).localeCompare(String(b.observedAt)))
      .map((i) => i.value.coordinates);
  }));
  return out;
}

async function refresh() {
  if (state.busy || state.tenant === null) return;
  state.busy = true;
  try {
    const [{ body: config }, gauges, plows, devices, letters, subscriptions, health, ready] = await Promise.all([
      call("/dashboard/api/config"),
      entities("FloodMonitoring"),
      entities("Vehicle"),
      entities("Device"),
      call("/admin/deadletters?limit=50"),
      call(`${NGSI}/subscriptions?limit=100`),
      call("/health"),
      call("/ready"),
    ]);
    state.config = config;
    const now = Date.parse(config.now);
    drawMap(gauges, plows, await tracksOf(plows, now));
    drawGauges(gauges);
    drawDevices(devices, now);
    drawLetters(Array.isArray(letters.body) ? letters.body : []);
    drawSubscriptions(Array.isArray(subscriptions.body) ? subscriptions.body : []);
    drawBroker(health.body, ready.body);
    $("updated").textContent = "updated " + new Date().toLocaleTimeString();
    document.body.dataset.refreshed = String(Number(document.body.dataset.refreshed || 0) + 1);
  } catch (error) {
    if (error instanceof NeedsKey) askForKey(); else $("updated").textContent = "refresh failed: " + error.message;
  } finally {
    state.busy = false;
  }
}

function askForKey(message) {
  clearInterval(state.timer);
  state.timer = null;
  $("login").hidden = false;
  $("board").hidden = true;
  $("login-error").textContent = message || (sessionStorage.getItem(KEY) ? "this key may not see the dashboard" : "");
}

async function start() {
  let tenants;
  try {
    const config = await call("/dashboard/api/config");
    state.config = config.body;
    tenants = (await call("/dashboard/api/tenants")).body || [];
  } catch (error) {
    if (error instanceof NeedsKey) return askForKey();
    throw error;
  }
  $("login").hidden = true;
  $("board").hidden = false;
  const select = $("tenant");
  select.replaceChildren();
  const wanted = new URLSearchParams(location.search).get("tenant");
  if (wanted !== null && !tenants.includes(wanted)) tenants.push(wanted);
  for (const name of tenants) {
    const option = document.createElement("option");
    option.value = name;
    option.textContent = name === "" ? "(default)" : name;
    select.appendChild(option);
  }
  state.tenant = wanted !== null ? wanted : tenants.length ? tenants[0] : "";
  select.value = state.tenant;
  select.onchange = () => { state.tenant = select.value; refresh(); };
  await refresh();
  clearInterval(state.timer);
  state.timer = setInterval(refresh, state.config.refreshSeconds * 1000);
}

$("login").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(KEY, $("api-key").value.trim());
  start();
});
start();
