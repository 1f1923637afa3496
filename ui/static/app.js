"use strict";
// The admin page: a bearer token from POST /api/tokens, then the views of
// the REST API (GET /api/openapi.json describes every call made here). The
// overview refreshes each second while it shows; the views of managed
// objects load when opened and after each change, so that a refresh never
// moves a row under the operator's pointer. The status button reads the
// public GET /ping each second, logged in or not. Data is written with
// textContent only. URLs are relative, so that the page also works under a
// proxy's prefix (udmg-proxy's /service/NAME/).

const REFRESH_MS = 1000;
const LIVE_LIMIT = 200; // live transfers shown on the overview
const MODES = ["ACTIVE", "PASSIVE", "OFFLINE", "UNLICENSED"];
const $ = (sel, root) => (root || document).querySelector(sel);
const enc = encodeURIComponent;
let timer = null;
let view = "overview";

function token() { return sessionStorage.getItem("udmg-token"); }

function basic(user, password) {
  const bytes = new TextEncoder().encode(user + ":" + password);
  return "Basic " + btoa(String.fromCharCode(...bytes));
}

// call sends a request to the REST API and returns the decoded answer and
// its headers; it throws an Error with the API's message. A string body is
// sent as it is (a license file), anything else as JSON.
async function call(method, path, body) {
  const headers = { "Authorization": "Bearer " + token(), "X-Requested-With": "XMLHttpRequest" };
  let data;
  if (typeof body === "string") { headers["Content-Type"] = "application/octet-stream"; data = body; }
  else if (body !== undefined) { headers["Content-Type"] = "application/json"; data = JSON.stringify(body); }
  const r = await fetch(path, { method, headers, body: data, cache: "no-store" });
  if (r.status === 401) { showLogin("Your session has ended; log in again."); throw new Error("unauthenticated"); }
  const answer = r.status === 204 ? null : await r.json().catch(() => null);
  if (!r.ok) {
    const e = new Error((answer && answer.error) || r.status + " " + r.statusText);
    e.status = r.status;
    throw e;
  }
  return { data: answer, headers: r.headers };
}

async function api(method, path, body) { return (await call(method, path, body)).data; }

function el(tag, props, ...children) {
  const e = document.createElement(tag);
  Object.assign(e, props || {});
  for (const c of children) e.append(c instanceof Node ? c : String(c));
  return e;
}

function button(text, action, onclick) {
  const b = el("button", { type: "button", textContent: text });
  b.dataset.action = action;
  b.addEventListener("click", onclick);
  return b;
}

// ---- status button: the mode of the node that serves this page ----

function setStatus(mode, why) {
  const b = $("#status");
  b.className = "status " + mode;
  b.textContent = mode;
  b.title = "Controller: " + mode + (why ? " (" + why + ")" : "");
  b.dataset.mode = mode;
}

// GET /ping answers 200 "ACTIVE" or 403 with the mode in one word; no answer
// (the node is down, the proxy has no target) is OFFLINE.
async function pollStatus() {
  try {
    const r = await fetch("ping", { cache: "no-store" });
    const mode = (await r.text()).trim();
    if (MODES.includes(mode)) setStatus(mode);
    else setStatus("OFFLINE", "GET /ping answered " + r.status);
  } catch (e) {
    setStatus("OFFLINE", "no answer from this node");
  }
}

// ---- login ----

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
  show(view);
  clearInterval(timer);
  timer = setInterval(() => { if (view === "overview") refresh(); }, REFRESH_MS);
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

// ---- tables ----

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

function when(stamp) { return stamp ? new Date(stamp).toLocaleString() : ""; }
function uptime(d) { return d ? d.replace(/\.\d+s$/, "s") : ""; }
function yes(b) { return b ? "yes" : "no"; }
function path(p) { return el("span", { className: "path", textContent: p || "" }); }

function modeBadge(mode) {
  const s = el("span", { className: "status " + mode, textContent: mode });
  s.dataset.mode = mode;
  return s;
}

function definitions(dl, pairs) {
  dl.replaceChildren();
  for (const [k, v] of pairs) dl.append(el("dt", { textContent: k }), el("dd", { textContent: v == null ? "" : String(v) }));
}

// ---- overview: cluster, nodes, license, live transfers ----

// The actions the API accepts in each status (fsm's transferAction): an
// ERROR transfer is retried, never resumed; a partner's transfer to our
// servers can only be cancelled while it runs.
const ACTIONS = [
  ["pause", ["PLANNED", "RUNNING", "INTERRUPTED"]],
  ["resume", ["PAUSED", "INTERRUPTED"]],
  ["retry", ["ERROR", "CANCELLED"]],
  ["cancel", ["PLANNED", "RUNNING", "PAUSED", "INTERRUPTED", "ERROR"]],
];

function allowed(t) {
  if (t.isServer) return ["RUNNING", "INTERRUPTED"].includes(t.status) ? ["cancel"] : [];
  return ACTIONS.filter(([, from]) => from.includes(t.status)).map(([act]) => act);
}

function seconds(s) { return s < 1 ? Math.round(s * 1000) + " ms" : s.toFixed(1) + " s"; }

// Each panel refreshes on its own, so that one failing call (a resource this
// user may not read, a database that is down) leaves the others working.
const panels = {
  async cluster() {
    let c;
    try { c = await api("GET", "api/cluster"); }
    catch (e) { if (e.status === 403 || e.status === 501) { $("#cluster-card").hidden = true; return; } throw e; }
    $("#cluster-card").hidden = false;
    const l = c.lease;
    const renewal = l.renewalSeconds != null ? seconds(l.renewalSeconds) + " (last renewal, measured by the holder)"
      : l.holder ? "measured by the holder only: open " + l.holder + "'s page" : "";
    definitions($("#cluster"), [
      ["ACTIVE", c.active || "none"],
      ["Lease", l.holder ? "held by " + l.holder + ", epoch " + l.epoch + (l.released ? " (released)" : "") : "not held"],
      ["Time left", l.holder ? seconds(l.remainingSeconds) + " of " + uptime(l.duration) + " (" + l.remainingFrom + ")" : ""],
      ["Renewal latency", renewal],
      ["Raft leader", c.leader],
      ["Answered by", c.answeredBy.nodeId + ": " + c.answeredBy.mode + ", Raft " + c.answeredBy.raftState + ", term " + c.answeredBy.term + ", " + c.answeredBy.voters + " voters"],
    ]);
    fill("#cluster-nodes", c.nodes, (n) => [n.nodeId, n.adminAddr, modeBadge(n.status), yes(n.leader), yes(n.active)]);
  },
  async nodes() {
    const { data, headers } = await call("GET", "api/sb_mgmt_nodes");
    fill("#nodes", data.nodes, (n) => [n.nodeId, n.nodeHostname, n.nodeIPAddress, n.nodePort, modeBadge(n.nodeStatus),
      uptime(n.nodeUptime), ago(n.nodeLastUpdate), ago(n.nodeLastActiveDate)]);
    $("#nodes-source").textContent = headers.get("X-Udmg-Source") === "cluster-state"
      ? "The node table (database) is unreachable: showing the cluster's replicated state." : "";
  },
  async license() {
    const l = await api("GET", "api/license");
    const holders = l.slots.filter((s) => s.licensed).map((s) => s.nodeId).join(", ");
    definitions($("#license"), [["Licensee", l.licensee], ["Nodes", l.nodes], ["Expires", l.expires || "never"],
      ["State", l.evaluation ? "evaluation (one node)" : l.valid ? "valid" : "invalid: " + l.problem], ["Slot holders", holders]]);
  },
  async transfers() {
    let data;
    try { data = await api("GET", "api/transfers?limit=" + LIVE_LIMIT); }
    catch (e) { if (e.status === 403) { $("#transfers-card").hidden = true; return; } throw e; }
    fill("#transfers", data.transfers, (t) => {
      const bar = el("progress", { max: t.filesize > 0 ? t.filesize : 1 });
      bar.value = t.filesize > 0 ? t.progress || 0 : t.status === "DONE" ? 1 : 0;
      bar.title = t.filesize > 0 ? Math.floor(100 * (t.progress || 0) / t.filesize) + " %" : "size unknown";
      const actions = el("span", { className: "actions" });
      for (const act of allowed(t)) {
        actions.append(button(act, act, () => act === "cancel" && !confirm("Cancel transfer " + t.id + "?") ? null : action(t.id, act)));
      }
      const attempts = t.isServer ? "" : t.attempts + " of " + t.maxAttempts;
      const error = el("span", { className: "error", textContent: t.errorCode ? t.errorCode + ": " + (t.errorDetails || "") : "" });
      const retry = t.nextRetry ? new Date(t.nextRetry).toLocaleTimeString() : "";
      return [t.id, t.rule, [t.partner || t.server, t.account].filter(Boolean).join(" / "), path(t.localPath || t.remotePath), t.status, t.step, bar,
        attempts, error, retry, actions, tasksCell(t.tasks)];
    });
    $("#transfers-more").textContent = data.transfers.length === LIVE_LIMIT ? "Showing the first " + LIVE_LIMIT + " live transfers." : "";
    $("#transfers").dataset.loaded = "1";
    $("#transfers-card").hidden = false;
  },
};

// tasksCell lists the tasks a transfer's rule chained, one line each:
// phase and position, type, state, duration, node, runs after a failover,
// and the error.
function tasksCell(runs) {
  const list = el("ul", { className: "tasks" });
  for (const r of runs || []) {
    const bits = [r.phase + " " + r.position, r.type, r.state];
    if (r.duration) bits.push(r.duration);
    if (r.nodeId) bits.push("on " + r.nodeId);
    if (r.runs > 1) bits.push("run " + r.runs + " times");
    const li = el("li", { textContent: bits.join(" · ") });
    if (r.error) li.append(el("span", { className: "error", textContent: " " + r.error }));
    list.append(li);
  }
  return list;
}

async function action(id, act) {
  try {
    await api("PUT", "api/transfers/" + enc(id) + "/" + act);
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

$("#license-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const form = ev.target, out = $("#license-error");
  out.textContent = "";
  out.classList.remove("ok");
  try {
    const file = form.elements.file.files[0];
    if (!file) throw new Error("choose a license file first");
    const l = await api("PUT", "api/license", await file.text());
    form.reset();
    out.classList.add("ok");
    out.textContent = "Installed: " + l.licensee + ", " + l.nodes + " nodes" + (l.expires ? ", until " + when(l.expires) : "");
    await panels.license();
  } catch (e) {
    out.textContent = e.message;
  }
});

// ---- history: finished transfers, newest first, a page at a time ----

const history = { offset: 0, seq: 0 };

async function loadHistory() {
  const f = $("#history-filter").elements;
  const limit = Number(f.limit.value);
  // One more than shown, to know whether there is a next page.
  let q = "api/history?limit=" + (limit + 1) + "&offset=" + history.offset;
  for (const name of ["status", "rule", "partner", "account"]) {
    const v = f[name].value.trim();
    if (v) q += "&" + name + "=" + enc(v);
  }
  // The time inputs hold this browser's local time; the API takes RFC3339.
  for (const name of ["since", "until"]) {
    if (f[name].value) q += "&" + name + "=" + enc(new Date(f[name].value).toISOString());
  }
  $("#history-error").textContent = "";
  const seq = ++history.seq; // only the last request's answer is shown
  try {
    const items = (await api("GET", q)).history;
    if (seq !== history.seq) return;
    fill("#history", items.slice(0, limit), (h) => [h.id, when(h.start), when(h.stop), h.rule, h.direction, h.agent, h.account,
      path(h.localPath || h.remotePath), h.status, h.step, el("span", { className: "error", textContent: h.errorCode ? h.errorCode + ": " + (h.errorDetails || "") : "" }), h.nodeId,
      tasksCell(h.tasks)]);
    const page = history.offset / limit + 1;
    $("#history-page").textContent = items.length ? "Page " + page + " (" + (history.offset + 1) + "–" + (history.offset + Math.min(limit, items.length)) + ")" : "No transfers";
    $("#history-prev").disabled = history.offset === 0;
    $("#history-next").disabled = items.length <= limit;
    $("#history").dataset.page = String(page);
  } catch (e) {
    $("#history-error").textContent = e.message;
  }
}

$("#history-filter").addEventListener("submit", (ev) => { ev.preventDefault(); history.offset = 0; loadHistory(); });
$("#history-clear").addEventListener("click", () => {
  const f = $("#history-filter").elements;
  for (const name of ["status", "rule", "partner", "account", "since", "until"]) f[name].value = "";
  history.offset = 0;
  loadHistory();
});

// historyNames offers the rules and partners the node knows in the filter's
// inputs (history may name deleted ones too, which can still be typed); a
// user who may not read them just gets no suggestions.
async function historyNames() {
  for (const [list, path, key] of [["#history-rules", "api/rules?limit=1000", "rules"], ["#history-partners", "api/partners?limit=1000", "partners"]]) {
    try {
      const names = [...new Set((await api("GET", path))[key].map((o) => o.name))].sort();
      $(list).replaceChildren(...names.map((n) => el("option", { value: n })));
    } catch (e) {
      $(list).replaceChildren();
    }
  }
}
$("#history-prev").addEventListener("click", () => {
  history.offset = Math.max(0, history.offset - Number($("#history-filter").elements.limit.value));
  loadHistory();
});
$("#history-next").addEventListener("click", () => {
  history.offset += Number($("#history-filter").elements.limit.value);
  loadHistory();
});

// ---- managed objects: one table and one form per kind, from KINDS ----

// A kind describes one collection of the API: its list (and the key of the
// list in the answer), the path of one item, the form's fields and the
// table's columns. A kind with a parent (accounts) lives under one object
// of another kind, chosen in the view.
//
// Field types: text (default), number, select, checkbox, textarea, lines (a
// textarea sent as an array, one per line), json (a textarea sent as the
// JSON it holds, which the server validates). fixed: set on creation only
// (the name). secret: write-only, sent only when filled. A dotted name
// ("perms.users") is a member of an object.
const PERM_MODES = ["---", "r--", "rw-", "rwd", "r-d", "-w-", "-wd", "--d"];
const DOMAINS = ["administration", "servers", "partners", "rules", "users", "transfers"];
const TASKS = (name) => ({ name, type: "json", label: name + " (JSON list of tasks)", placeholder: '[{"type": "COPY", "args": {"path": "archive"}}]' });

const KINDS = {
  servers: {
    title: "Local servers", noun: "server", list: () => "api/servers", key: "servers", id: (o) => o.name,
    item: (o) => "api/servers/" + enc(o.name),
    toggle: { field: "enabled", path: (o) => "api/servers/" + enc(o.name) + "/" + (o.enabled === false ? "enable" : "disable") },
    fields: [
      { name: "name", fixed: true, required: true },
      { name: "protocol", type: "select", options: ["sftp", "ftp"] },
      { name: "port", type: "number", required: true },
      { name: "root", placeholder: "relative to GatewayHome" },
      { name: "passiveMin", type: "number", label: "FTP passive ports from" },
      { name: "passiveMax", type: "number", label: "to" },
      { name: "publicHost", label: "Public host (passive replies)" },
      { name: "tls", type: "checkbox", label: "Explicit FTPS" },
      { name: "tlsRequired", type: "checkbox", label: "TLS required" },
      { name: "tlsCert", type: "textarea", label: "TLS certificate (PEM)" },
      { name: "tlsKey", type: "textarea", secret: true, label: "TLS key (PEM, write-only)" },
    ],
    columns: [["Name", (o) => o.name], ["Protocol", (o) => o.protocol], ["Port", (o) => o.port], ["Root", (o) => o.root],
      ["TLS", (o) => o.tls ? (o.tlsRequired ? "required" : "offered") : ""], ["Enabled", (o) => yes(o.enabled !== false)]],
  },
  accounts: {
    title: "Local accounts", noun: "account", parent: "servers", key: "accounts", id: (o) => o.login,
    list: (p) => "api/servers/" + enc(p) + "/accounts", item: (o, p) => "api/servers/" + enc(p) + "/accounts/" + enc(o.login),
    fields: [
      { name: "login", fixed: true, required: true },
      { name: "password", type: "password", secret: true, label: "Password (8 to 72 bytes; write-only)" },
      { name: "publicKeys", type: "lines", label: "SSH public keys (one authorized_keys line each)" },
    ],
    columns: [["Login", (o) => o.login], ["Password", (o) => yes(o.hasPassword)], ["Public keys", (o) => o.publicKeys.length]],
  },
  partners: {
    title: "Partners", noun: "partner", list: () => "api/partners", key: "partners", id: (o) => o.name,
    item: (o) => "api/partners/" + enc(o.name),
    fields: [
      { name: "name", fixed: true, required: true },
      { name: "protocol", type: "select", options: ["sftp", "ftp"] },
      { name: "address", required: true, placeholder: "host:port" },
      { name: "hostKey", type: "textarea", label: "SSH host key (sftp; as ssh-keyscan prints it)" },
      { name: "tls", type: "checkbox", label: "Explicit FTPS" },
      { name: "tlsCert", type: "textarea", label: "TLS certificates its certificate must chain to (PEM)" },
    ],
    columns: [["Name", (o) => o.name], ["Protocol", (o) => o.protocol], ["Address", (o) => o.address],
      ["Host key", (o) => o.hostKey ? o.hostKey.split(" ")[0] : ""], ["TLS", (o) => yes(o.tls)]],
  },
  remote: {
    title: "Remote accounts", noun: "remote account", parent: "partners", key: "accounts", id: (o) => o.login,
    list: (p) => "api/partners/" + enc(p) + "/accounts", item: (o, p) => "api/partners/" + enc(p) + "/accounts/" + enc(o.login),
    fields: [
      { name: "login", fixed: true, required: true },
      { name: "password", type: "password", secret: true, label: "Password (write-only)" },
      { name: "privateKey", type: "textarea", secret: true, label: "SSH private key (unencrypted; write-only)" },
    ],
    columns: [["Login", (o) => o.login], ["Password", (o) => yes(o.hasPassword)], ["Private key", (o) => yes(o.hasPrivateKey)]],
  },
  rules: {
    title: "Rules", noun: "rule", list: () => "api/rules", key: "rules", id: (o) => o.name + "/" + o.direction,
    item: (o) => "api/rules/" + enc(o.name) + "/" + enc(o.direction),
    fields: [
      { name: "name", fixed: true, required: true },
      { name: "direction", type: "select", options: ["send", "receive"], fixed: true },
      { name: "path", required: true, placeholder: "/out" },
      { name: "localDir", label: "Local directory (relative to GatewayHome)" },
      TASKS("preTasks"), TASKS("postTasks"), TASKS("errorTasks"),
    ],
    columns: [["Name", (o) => o.name], ["Direction", (o) => o.direction], ["Path", (o) => o.path], ["Local directory", (o) => o.localDir],
      ["Tasks", (o) => ["preTasks", "postTasks", "errorTasks"].map((k) => (o[k] || []).length).join(" / ")]],
  },
  users: {
    title: "Users and permissions", noun: "user", list: () => "api/users", key: "users", id: (o) => o.username,
    item: (o) => "api/users/" + enc(o.username),
    fields: [
      { name: "username", required: true, label: "User name (a new one renames)" },
      { name: "password", type: "password", secret: true, label: "Password (8 to 72 bytes; write-only)" },
      ...DOMAINS.map((d) => ({ name: "perms." + d, type: "select", options: PERM_MODES, label: d + " (read, write, delete)" })),
    ],
    columns: [["User", (o) => o.username], ...DOMAINS.map((d) => [d, (o) => o.perms[d]])],
  },
};

// get and put read and write a field's value in an object, a dotted name
// reaching into a member object.
function get(o, name) { return name.split(".").reduce((v, k) => (v == null ? undefined : v[k]), o); }
function put(o, name, v) {
  const keys = name.split("."), last = keys.pop();
  for (const k of keys) o = o[k] = o[k] || {};
  o[last] = v;
}

// The text a field's input shows for a value, and the value its text sends
// (undefined: send nothing). A json field that does not parse is an error
// naming the field.
function shown(f, v) {
  if (v == null) return "";
  if (f.type === "lines") return v.join("\n");
  if (f.type === "json") return v.length === 0 ? "" : JSON.stringify(v, null, 2);
  return String(v);
}

function value(f, input) {
  if (f.type === "checkbox") return input.checked;
  const s = input.value;
  if (s.trim() === "") return f.type === "lines" ? [] : undefined;
  switch (f.type) {
    case "number": return Number(s);
    case "lines": return s.split("\n").map((l) => l.trim()).filter(Boolean);
    case "json":
      try { return JSON.parse(s); } catch (e) { throw new Error(f.name + ": not JSON: " + e.message); }
  }
  return s;
}

function input(f) {
  let i;
  switch (f.type) {
    case "select": i = el("select"); for (const o of f.options) i.append(el("option", { value: o, textContent: o })); break;
    case "textarea": case "lines": case "json": i = el("textarea", { rows: f.type === "json" ? 4 : 3 }); break;
    default: i = el("input", { type: f.type || "text" });
  }
  i.name = f.name;
  if (f.placeholder) i.placeholder = f.placeholder;
  if (f.type === "password") i.autocomplete = "new-password";
  return i;
}

// Manager is one kind's view: its table, its form (creating, or editing the
// row whose Edit was clicked) and the error line beside the form.
class Manager {
  constructor(name, kind) {
    Object.assign(this, { name, kind, editing: null, items: [] });
    this.section = el("section", { className: "card", id: name + "-card" });
    this.view = el("div", { className: "view", id: "view-" + name, hidden: true }, this.section);
    this.section.append(el("h2", { textContent: kind.title }));
    if (kind.parent) {
      this.parentSelect = el("select", { name: "parent" });
      this.parentSelect.addEventListener("change", () => { this.cancelEdit(); this.load(); });
      this.section.append(el("label", { className: "parent" }, KINDS[kind.parent].noun[0].toUpperCase() + KINDS[kind.parent].noun.slice(1) + " ", this.parentSelect));
    }
    this.table = el("table", { id: name + "-table" });
    this.table.append(el("thead", {}, el("tr", {}, ...kind.columns.map(([h]) => el("th", { textContent: h })), el("th"))), el("tbody"));
    this.listError = el("p", { className: "error", id: name + "-list-error", role: "alert" });
    this.section.append(this.table, this.listError);
    this.buildForm();
    $("#app").append(this.view);
  }

  buildForm() {
    const k = this.kind;
    this.form = el("form", { id: this.name + "-form", className: "object-form", noValidate: true });
    this.legend = el("h3");
    this.form.append(this.legend);
    this.inputs = {};
    for (const f of k.fields) {
      const i = input(f);
      this.inputs[f.name] = i;
      const label = el("label", { className: f.type === "checkbox" ? "check" : f.type === "textarea" || f.type === "lines" || f.type === "json" ? "wide" : "" },
        el("span", { textContent: (f.label || f.name) + (f.required ? " *" : "") }), i);
      this.form.append(label);
    }
    this.submit = el("button", { type: "submit" });
    this.cancel = button("Cancel edit", "cancel-edit", () => this.cancelEdit());
    this.error = el("p", { className: "error", id: this.name + "-error", role: "alert" });
    this.form.append(el("div", { className: "buttons" }, this.submit, this.cancel), this.error);
    this.form.addEventListener("submit", (ev) => { ev.preventDefault(); this.save(); });
    this.section.append(this.form);
    this.cancelEdit();
  }

  parent() { return this.parentSelect ? this.parentSelect.value : undefined; }

  // load refreshes the table (and the parents to choose from).
  async load() {
    this.listError.textContent = "";
    try {
      if (this.parentSelect) {
        const p = KINDS[this.kind.parent];
        const parents = (await api("GET", p.list() + "?limit=1000"))[p.key].map(p.id);
        const keep = this.parentSelect.value;
        this.parentSelect.replaceChildren(...parents.map((n) => el("option", { value: n, textContent: n })));
        if (parents.includes(keep)) this.parentSelect.value = keep;
        if (!parents.length) {
          this.items = [];
          this.render();
          this.listError.textContent = "Create a " + p.noun + " first.";
          return;
        }
      }
      this.items = (await api("GET", this.kind.list(this.parent()) + "?limit=1000"))[this.kind.key] || [];
      this.render();
    } catch (e) {
      this.listError.textContent = e.message;
    }
  }

  render() {
    const k = this.kind, tbody = $("tbody", this.table);
    tbody.replaceChildren();
    for (const o of this.items) {
      const acts = el("span", { className: "actions" }, button("Edit", "edit", () => this.edit(o)));
      if (k.toggle) acts.append(button(o[k.toggle.field] === false ? "Enable" : "Disable", "toggle", () => this.act(() => api("PUT", k.toggle.path(o)))));
      acts.append(this.deleteButton(o));
      const tr = row(tbody, [...k.columns.map(([, f]) => f(o)), acts]);
      tr.dataset.id = k.id(o);
    }
    this.table.dataset.loaded = String(Date.now());
  }

  // deleteButton asks for a second click instead of a modal dialog.
  deleteButton(o) {
    const b = button("Delete", "delete", () => {
      if (b.dataset.armed) { this.act(() => api("DELETE", this.kind.item(o, this.parent()))); return; }
      b.dataset.armed = "1";
      b.textContent = "Really delete?";
      b.classList.add("danger");
      setTimeout(() => { delete b.dataset.armed; b.textContent = "Delete"; b.classList.remove("danger"); }, 5000);
    });
    return b;
  }

  // act runs a change, shows its error beside the form, and reloads.
  async act(change) {
    this.error.textContent = "";
    try { await change(); } catch (e) { this.error.textContent = e.message; return false; }
    await this.load();
    return true;
  }

  edit(o) {
    this.editing = o;
    this.legend.textContent = "Edit " + this.kind.noun + " " + this.kind.id(o);
    this.submit.textContent = "Save";
    this.cancel.hidden = false;
    this.error.textContent = "";
    for (const f of this.kind.fields) {
      const i = this.inputs[f.name], v = get(o, f.name);
      if (f.type === "checkbox") i.checked = !!v; else i.value = f.secret ? "" : shown(f, v);
      i.disabled = !!f.fixed;
    }
    this.form.dataset.mode = "edit";
    this.form.scrollIntoView({ block: "nearest" });
  }

  cancelEdit() {
    this.editing = null;
    this.form.reset();
    this.legend.textContent = "New " + this.kind.noun;
    this.submit.textContent = "Create";
    this.cancel.hidden = true;
    for (const i of Object.values(this.inputs)) i.disabled = false;
    this.form.dataset.mode = "create";
  }

  // body is what the form sends: on creation every field filled in, on an
  // edit (PATCH) the fields that differ from the object and the secrets
  // filled in.
  body() {
    const out = {}, old = this.editing;
    for (const f of this.kind.fields) {
      if (old && f.fixed) continue;
      const v = value(f, this.inputs[f.name]);
      if (v === undefined || (!old && (v === false || (Array.isArray(v) && !v.length)))) continue;
      if (old && !f.secret && JSON.stringify(v) === JSON.stringify(get(old, f.name) ?? (f.type === "lines" || f.type === "json" ? [] : f.type === "checkbox" ? false : undefined))) continue;
      put(out, f.name, v);
    }
    return out;
  }

  async save() {
    this.error.textContent = "";
    let body;
    try { body = this.body(); } catch (e) { this.error.textContent = e.message; return; }
    const old = this.editing;
    if (old && !Object.keys(body).length) { this.cancelEdit(); return; }
    const ok = await this.act(() => old ? api("PATCH", this.kind.item(old, this.parent()), body) : api("POST", this.kind.list(this.parent()), body));
    if (ok) this.cancelEdit();
  }
}

// ---- views ----

const VIEWS = [["overview", "Overview"], ["history", "History"]];
const managers = {};
for (const [name, kind] of Object.entries(KINDS)) {
  managers[name] = new Manager(name, kind);
  VIEWS.push([name, kind.title]);
}
for (const [name, title] of VIEWS) {
  const b = button(title, "view", () => show(name));
  b.dataset.view = name;
  $("#tabs").append(b);
}

function show(name) {
  view = name;
  for (const [n] of VIEWS) {
    $("#view-" + n).hidden = n !== name;
    $(`#tabs button[data-view="${n}"]`).classList.toggle("current", n === name);
  }
  if (name === "overview") refresh();
  else if (name === "history") { loadHistory(); historyNames(); }
  else managers[name].load();
}

pollStatus();
setInterval(pollStatus, REFRESH_MS);
if (token()) showApp(); else showLogin();
