// The API reference page: fetches the embedded OpenAPI description and
// lists its paths, methods, parameters, request bodies, answers and schemas.
// Plain DOM code, no library: the page is served from the binary.
"use strict";

const METHODS = ["get", "post", "put", "patch", "delete"];

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(typeof c === "string" ? document.createTextNode(c) : c);
  }
  return e;
}

function refName(ref) { return ref.split("/").pop(); }

function resolve(doc, obj) {
  while (obj && obj.$ref) {
    let cur = doc;
    for (const part of obj.$ref.replace(/^#\//, "").split("/")) cur = cur[part];
    obj = cur;
  }
  return obj;
}

// schemaText is a short, readable rendering of a JSON schema.
function schemaText(s, depth) {
  depth = depth || 0;
  if (!s) return "any";
  if (s.$ref) return refName(s.$ref);
  if (s.allOf) return s.allOf.map(x => schemaText(x, depth)).join(" & ");
  if (s.anyOf) return "(" + s.anyOf.map(x => schemaText(x, depth)).join(" | ") + ")";
  if (s.required && !s.type && !s.properties) return "required: " + s.required.join(", ");
  let t = Array.isArray(s.type) ? s.type.join("|") : (s.type || "any");
  if (s.enum) t = s.enum.map(v => JSON.stringify(v)).join(" | ");
  if (t === "array") return "[" + schemaText(s.items, depth) + "]";
  if (t === "object" && s.properties) {
    const pad = "  ".repeat(depth + 1);
    const req = new Set(s.required || []);
    const lines = Object.entries(s.properties).map(([k, v]) =>
      pad + k + (req.has(k) ? "" : "?") + ": " + schemaText(v, depth + 1) + (v.description ? "  // " + v.description : ""));
    return "{\n" + lines.join("\n") + "\n" + "  ".repeat(depth) + "}";
  }
  const extra = [];
  if (s.pattern) extra.push("pattern " + s.pattern);
  if (s.minimum !== undefined) extra.push("≥ " + s.minimum);
  if (s.maximum !== undefined) extra.push("≤ " + s.maximum);
  if (s.minLength !== undefined) extra.push("min length " + s.minLength);
  if (s.maxLength !== undefined) extra.push("max length " + s.maxLength);
  if (s.format) extra.push(s.format);
  if (s.default !== undefined) extra.push("default " + JSON.stringify(s.default));
  return t + (extra.length ? " (" + extra.join(", ") + ")" : "");
}

function schemaBlock(s) {
  const pre = el("div", {class: "schema"}, schemaText(s));
  if (s && s.$ref) {
    pre.textContent = "";
    pre.append(el("a", {class: "ref", href: "#schema-" + refName(s.$ref)}, refName(s.$ref)));
  }
  return pre;
}

function contentList(doc, content) {
  const out = el("div");
  for (const [mime, media] of Object.entries(content || {})) {
    out.append(el("div", {}, el("code", {}, mime)));
    if (media.schema) out.append(schemaBlock(media.schema));
  }
  return out;
}

function parametersTable(doc, params) {
  const t = el("table", {}, el("tr", {}, el("th", {}, "Parameter"), el("th", {}, "In"), el("th", {}, "Schema"), el("th", {}, "Description")));
  for (const p0 of params) {
    const p = resolve(doc, p0);
    t.append(el("tr", {}, el("td", {}, el("code", {}, p.name + (p.required ? "" : "?"))), el("td", {}, p.in),
      el("td", {}, el("code", {}, schemaText(p.schema))), el("td", {}, p.description || "")));
  }
  return t;
}

function responsesTable(doc, responses) {
  const t = el("table", {}, el("tr", {}, el("th", {}, "Status"), el("th", {}, "Description"), el("th", {}, "Body")));
  for (const [code, r0] of Object.entries(responses || {})) {
    const r = resolve(doc, r0);
    const headers = Object.keys(r.headers || {});
    t.append(el("tr", {}, el("td", {}, el("code", {}, code)),
      el("td", {}, r.description || "", headers.length ? el("div", {}, "Headers: ", el("code", {}, headers.join(", "))) : null),
      el("td", {}, contentList(doc, r.content))));
  }
  return t;
}

function operation(doc, path, method, op) {
  const publicOp = Array.isArray(op.security) && op.security.length === 0;
  const head = el("summary", {}, el("span", {class: "method " + method}, method.toUpperCase()),
    el("span", {class: "path"}, path), el("span", {class: "summary"}, op.summary || ""),
    publicOp ? el("span", {class: "public"}, "no authentication") : null);
  const body = el("div", {class: "body"});
  if (op.description) body.append(el("p", {}, op.description));
  body.append(el("p", {}, "Operation ", el("a", {href: "#op-" + op.operationId}, el("code", {}, op.operationId || ""))));
  const params = (doc.paths[path].parameters || []).concat(op.parameters || []);
  if (params.length) body.append(el("h4", {}, "Parameters"), parametersTable(doc, params));
  if (op.requestBody) {
    const rb = resolve(doc, op.requestBody);
    body.append(el("h4", {}, "Request body" + (rb.required ? "" : " (optional)")));
    if (rb.description) body.append(el("p", {}, rb.description));
    body.append(contentList(doc, rb.content));
  }
  body.append(el("h4", {}, "Answers"), responsesTable(doc, op.responses));
  const d = el("details", {class: "op", id: "op-" + (op.operationId || method + path), "data-text": (method + " " + path + " " + (op.summary || "") + " " + (op.operationId || "")).toLowerCase()}, head, body);
  return d;
}

function render(doc) {
  document.getElementById("title").textContent = doc.info.title + " (OpenAPI " + doc.openapi + ", version " + doc.info.version + ")";
  document.getElementById("intro").append(el("p", {}, doc.info.description || ""));
  const byTag = new Map();
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const m of METHODS) {
      if (!item[m]) continue;
      const tag = (item[m].tags || ["other"])[0];
      if (!byTag.has(tag)) byTag.set(tag, []);
      byTag.get(tag).push([path, m, item[m]]);
    }
  }
  const paths = document.getElementById("paths");
  const toc = document.getElementById("toc");
  let count = 0;
  for (const [tag, ops] of byTag) {
    toc.append(el("a", {href: "#tag-" + tag}, tag), " · ");
    paths.append(el("h2", {id: "tag-" + tag}, tag));
    for (const [path, m, op] of ops) { paths.append(operation(doc, path, m, op)); count++; }
  }
  toc.append(el("a", {href: "#schemas-title"}, "schemas"));
  const schemas = document.getElementById("schemas");
  document.getElementById("schemas-title").hidden = false;
  for (const [name, s] of Object.entries((doc.components || {}).schemas || {})) {
    schemas.append(el("div", {class: "op", id: "schema-" + name, "data-text": name.toLowerCase()},
      el("div", {class: "body"}, el("h3", {}, name), s.description ? el("p", {}, s.description) : null, el("div", {class: "schema"}, schemaText(s)))));
  }
  document.getElementById("status").textContent = count + " operations on " + Object.keys(doc.paths).length + " paths.";
  // A link to #op-<operationId> opens that operation.
  const target = location.hash && document.getElementById(decodeURIComponent(location.hash.slice(1)));
  if (target) { if (target.tagName === "DETAILS") target.open = true; target.scrollIntoView(); }
}

function filter(q) {
  q = q.trim().toLowerCase();
  for (const e of document.querySelectorAll("[data-text]")) {
    e.classList.toggle("hidden", q !== "" && !e.getAttribute("data-text").includes(q));
  }
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("filter").addEventListener("input", e => filter(e.target.value));
  fetch("/api/openapi.json")
    .then(r => { if (!r.ok) throw new Error("GET /api/openapi.json: " + r.status); return r.json(); })
    .then(render)
    .catch(err => { document.getElementById("status").textContent = "Cannot show the description: " + err.message; });
});
