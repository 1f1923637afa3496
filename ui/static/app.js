"use strict";
// The admin page: a bearer token from POST /api/tokens, then a refresh of
// every panel each second. Data is written with textContent only. URLs are
// relative, so that the page also works under a proxy's prefix (udmg-proxy's
// /service/NAME/).

const REFRESH_MS = 1000;
const $ = (sel) => document.querySelector(sel);
let timer = null;

function token() { return sessionStorage.getItem("udmg-token"); }

function basic(user, password) {
  const bytes = new TextEncoder().encode(user + ":" + password);
  return "Basic " + btoa(String.fromCharCode(...bytes));
}

// call sends a request to the REST API and returns the decoded answer and
// its headers; it throws an Error with the API's message.
async function call(method, path, body) {
  const headers = { "Authorization": "Bearer " + token(), "X-Requested-With": "XMLHttpRequest" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: "no-store" });
  if (r.status === 401) { showLogin("Your session has ended; log in again."); throw new Error("unauthenticated"); }
  const data = r.status === 204 ? null : await r.json().catch(() => null);
  if (!r.ok) {
    const e = new Error((data && data.error) || r.status + " " + r.statusText);
    e.status = r.status;
    throw e;
  }
  return { data, headers: r.headers };
}

async function api(method, path, body) { return (await call(method, path, body)).data; }

function showLogin(message) {
  sessionStorage.removeItem("udmg-token");
  clearInterval(timer);
  timer = null;
  $("#app").hidden = true;
  $("#logout").hidden = true;
  $("#who").textContent = "";
  $("#login").hidden = false;
  $("#login-error").textContent = message || "";
}

function showApp() {
  $("#login").hidden = true;
  $("#app").hidden = false;
  $("#logout").hidden = false;
  $("#who").textContent = sessionStorage.getItem("udmg-user") || "";
  refresh();
  timer = setInterval(refresh, REFRESH_MS);
}

$("#login").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const user = $("#user").value, password = $("#password").value;
  try {
    const r = await fetch("api/tokens", { method: "POST", headers: { "Authorization": basic(user, password), "X-Requested-With": "XMLHttpRequest" } });
    const data = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(data.error || r.status + " " + r.statusText);
    sessionStorage.setItem("udmg-token", data.token);
    sessionStorage.setItem("udmg-user", user);
    $("#password").value = "";
    showApp();
  } catch (e) {
    $("#login-error").textContent = "Login failed: " + e.message;
  }
});

$("#logout").addEventListener("click", async () => {
  try { await api("DELETE", "api/tokens/current"); } catch (e) { /* gone already */ }
  showLogin();
});

function setStatus(mode) {
  const b = $("#status");
  b.className = "status " + mode;
  b.title = "Controller: " + mode;
  b.dataset.mode = mode;
}

function row(tbody, cells) {
  const tr = document.createElement("tr");
  for (const c of cells) {
    const td = document.createElement("td");
    if (c instanceof Node) td.appendChild(c); else td.textContent = c == null ? "" : String(c);
    tr.appendChild(td);
  }
  tbody.appendChild(tr);
  return tr;
}

function fill(table, items, cells) {
  const tbody = $(table + " tbody");
  tbody.replaceChildren();
  for (const it of items) row(tbody, cells(it));
  return tbody;
}

function ago(stamp) {
  if (!stamp) return "";
  const s = Math.round((Date.now() - Date.parse(stamp)) / 1000);
  return s < 2 ? "now" : s < 120 ? s + " s ago" : new Date(stamp).toLocaleString();
}

function uptime(d) { return d ? d.replace(/\.\d+s$/, "s") : ""; }

// Each panel refreshes on its own, so that one failing call (a resource this
// user may not read, a database that is down) leaves the others working.
const panels = {
  async status() {
    try { setStatus((await api("GET", "api/sb_healthcheck")).nodeStatus); }
    catch (e) { setStatus("OFFLINE"); throw e; }
  },
  async nodes() {
    const { data, headers } = await call("GET", "api/sb_mgmt_nodes");
    fill("#nodes", data.nodes, (n) => {
      const s = document.createElement("span");
      s.className = "status " + n.nodeStatus;
      s.textContent = n.nodeStatus;
      return [n.nodeId, n.nodeHostname, n.nodeIPAddress, n.nodePort, s, uptime(n.nodeUptime), ago(n.nodeLastUpdate), ago(n.nodeLastActiveDate)];
    });
    $("#nodes-source").textContent = headers.get("X-Udmg-Source") === "cluster-state"
      ? "The node table (database) is unreachable: showing the cluster's replicated state." : "";
  },
  async license() {
    const l = await api("GET", "api/license");
    const dl = $("#license");
    dl.replaceChildren();
    const holders = l.slots.filter((s) => s.licensed).map((s) => s.nodeId).join(", ");
    for (const [k, v] of [["Licensee", l.licensee], ["Nodes", l.nodes], ["Expires", l.expires || "never"],
      ["State", l.evaluation ? "evaluation (one node)" : l.valid ? "valid" : "invalid: " + l.problem], ["Slot holders", holders]]) {
      const dt = document.createElement("dt"); dt.textContent = k;
      const dd = document.createElement("dd"); dd.textContent = v;
      dl.append(dt, dd);
    }
  },
  async servers() { await optional("#servers-card", "api/servers", "servers", "#servers", (s) => [s.name, s.protocol, address(s), s.enabled === false ? "no" : "yes"]); },
  async partners() { await optional("#partners-card", "api/partners", "partners", "#partners", (p) => [p.name, p.protocol, address(p)]); },
  async transfers() {
    await optional("#transfers-card", "api/transfers", "transfers", "#transfers", (t) => {
      const bar = document.createElement("progress");
      bar.max = t.filesize > 0 ? t.filesize : 1;
      bar.value = t.filesize > 0 ? t.progress || 0 : t.status === "DONE" ? 1 : 0;
      bar.title = t.filesize > 0 ? Math.floor(100 * (t.progress || 0) / t.filesize) + " %" : "size unknown";
      const actions = document.createElement("span");
      actions.className = "actions";
      // The actions the API allows in each status (an ERROR transfer is
      // retried, not resumed).
      for (const [act, when] of [["pause", ["PLANNED", "RUNNING", "INTERRUPTED"]], ["resume", ["PAUSED", "INTERRUPTED"]],
        ["retry", ["ERROR", "CANCELLED"]], ["cancel", ["PLANNED", "RUNNING", "PAUSED", "INTERRUPTED", "ERROR"]]]) {
        if (!when.includes(t.status)) continue;
        const b = document.createElement("button");
        b.type = "button";
        b.textContent = act;
        b.dataset.action = act;
        b.addEventListener("click", () => act === "cancel" && !confirm("Cancel transfer " + t.id + "?") ? null : action(t.id, act));
        actions.appendChild(b);
      }
      const attempts = t.isServer ? "" : t.attempts + " of " + t.maxAttempts;
      const error = document.createElement("span");
      error.className = "error";
      error.textContent = t.errorCode ? t.errorCode + ": " + (t.errorDetails || "") : "";
      const retry = t.nextRetry ? new Date(t.nextRetry).toLocaleTimeString() : "";
      return [t.id, t.rule, [t.partner || t.server, t.account].filter(Boolean).join(" / "), t.file || t.localPath || t.remotePath, t.status, bar,
        attempts, error, retry, actions];
    });
  },
};

function address(o) { return o.address || (o.host ? o.host + ":" + o.port : o.port ? ":" + o.port : ""); }

// optional shows a panel only when the API has the resource and the user may
// read it.
async function optional(card, path, key, table, cells) {
  try {
    const data = await api("GET", path);
    fill(table, data[key] || [], cells).closest("table").dataset.loaded = "1";
    $(card).hidden = false;
  } catch (e) {
    if (e.status === 404 || e.status === 403) { $(card).hidden = true; return; }
    throw e;
  }
}

async function action(id, act) {
  try {
    await api("PUT", "api/transfers/" + encodeURIComponent(id) + "/" + act);
    await panels.transfers();
  } catch (e) {
    $("#banner").textContent = act + " " + id + ": " + e.message;
  }
}

async function refresh() {
  const errors = [];
  await Promise.all(Object.entries(panels).map(([name, f]) => f().catch((e) => errors.push(name + ": " + e.message))));
  if (token()) $("#banner").textContent = errors.filter((m) => !m.endsWith("unauthenticated")).join(" · ");
}

if (token()) showApp(); else showLogin();
