// Small helpers every view uses: building elements, talking to the API, formatting.

import { FINISHED_STATUSES, RUN_STATUSES } from "./constants.js";

const SVG_NS = "http://www.w3.org/2000/svg";

function build(el, attrs, children) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value == null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "value" || key === "checked" || key === "selected") el[key] = value;
    else if (key === "style") el.style.cssText = value;      // not an attribute: the page's CSP refuses inline ones
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

/** An HTML element; children are nodes or text (never parsed as HTML). */
export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

/** An SVG element. */
export function s(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child == null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Replace an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

// -- the API ------------------------------------------------------------------------------

let onSignedOut = () => {};

/** What to do when the server no longer knows who we are (the session ended or was revoked). */
export function setSignedOutHandler(fn) {
  onSignedOut = fn;
}

/**
 * JSON from the API: {ok, status, data} or {ok: false, status, error: {code, message, details}}.
 * Who asks is the session cookie (HttpOnly: this script never sees it); a change is always a JSON body.
 */
export async function api(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") {
    headers["Content-Type"] = "application/json";
    body = body === undefined ? {} : body;
  }
  let response;
  try {
    response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (err) {
    return { ok: false, status: 0, error: { code: "network", message: `cannot reach the server (${err.message})`, details: [] } };
  }
  let data = null;
  const text = await response.text();
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (response.ok) return { ok: true, status: response.status, data };
  if (response.status === 401 && path !== "/api/session") onSignedOut();
  const error = (data && data.error) || { code: `http_${response.status}`, message: text.slice(0, 300) || response.statusText };
  return { ok: false, status: response.status, error: { details: [], ...error } };
}

let reporter = () => {};

/** Where command outcomes are shown (set once by app.js). */
export function setReporter(fn) {
  reporter = fn;
}

export function report(kind, text) {
  reporter(kind, text);
}

/** POST a command as the signed-in person; the outcome or the refusal goes to the status area. */
export async function command(label, path, body = {}) {
  const result = await api(path, { method: "POST", body });
  if (result.ok) {
    const events = (result.data && result.data.events) || [];
    const what = events.length ? events.map((e) => e.type).join(", ") : "nothing to change";
    report("ok", `${label}: accepted (${what})`);
  } else {
    report("error", `${label} refused: ${result.error.message} [${result.status || "no answer"} ${result.error.code}]`);
  }
  return result;
}

/**
 * An EventSource with JSON handlers per event name; `onState` hears "live", "reconnecting"
 * or "closed". Returns a function that closes it.
 *
 * A browser gives up on a stream the server refuses (a 401 once the session is revoked or
 * expired, a 503 while the engine is away): then the session is asked about, and the page
 * signs out if it ended, else the stream is opened again, a little later each time, from
 * where it stopped (`last_event_id`, as the browser's own reconnection sends it).
 */
export function live(url, handlers, onState = () => {}) {
  let source = null;
  let stopped = false;
  let again = null;
  let tries = 0;
  let lastId = "";
  const open = () => {
    source = new EventSource(lastId ? `${url}${url.includes("?") ? "&" : "?"}last_event_id=${encodeURIComponent(lastId)}` : url);
    for (const [name, handle] of Object.entries(handlers)) {
      source.addEventListener(name, (message) => {
        if (message.lastEventId) lastId = message.lastEventId;
        handle(JSON.parse(message.data), message);
      });
    }
    source.onopen = () => { tries = 0; onState("live"); };
    source.onerror = () => {
      if (source.readyState !== EventSource.CLOSED) {
        onState("reconnecting");
        return;
      }
      onState("closed");
      api("/api/session").then((session) => {
        if (stopped) return;
        if (session.status === 401) {
          onSignedOut();
          return;
        }
        tries += 1;
        onState("reconnecting");
        again = setTimeout(open, Math.min(30_000, 1000 * 2 ** Math.min(tries, 5)));
      });
    };
  };
  open();
  return () => {
    stopped = true;
    clearTimeout(again);
    source.close();
  };
}

/** A small "live / reconnecting" indicator for a stream. */
export function liveBadge() {
  const el = h("span", { class: "live", "data-state": "connecting", "data-testid": "live-state" }, "connecting…");
  el.set = (state) => {
    el.dataset.state = state;
    el.textContent = { live: "live", reconnecting: "reconnecting…", closed: "disconnected", connecting: "connecting…" }[state] || state;
  };
  return el;
}

// -- formatting ---------------------------------------------------------------------------

export function formatDuration(ms) {
  if (ms == null || !Number.isFinite(ms)) return "–";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const seconds = ms / 1000;
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} m ${String(Math.floor(seconds % 60)).padStart(2, "0")} s`;
  return `${Math.floor(minutes / 60)} h ${String(minutes % 60).padStart(2, "0")} m`;
}

/** From `start` to `end` (or now), in ms. */
export function elapsed(start, end) {
  if (!start) return null;
  return Math.max(0, (end ? Date.parse(end) : Date.now()) - Date.parse(start));
}

/** A <time> showing the local clock time (with the date if not today). */
export function timeEl(iso, { ms = false } = {}) {
  if (!iso) return h("span", { class: "muted" }, "–");
  const at = new Date(iso);
  const today = at.toDateString() === new Date().toDateString();
  const clock = at.toLocaleTimeString([], { hour12: false, hour: "2-digit", minute: "2-digit", second: "2-digit" })
    + (ms ? `.${String(at.getMilliseconds()).padStart(3, "0")}` : "");
  const text = today ? clock : `${at.toLocaleDateString()} ${clock}`;
  return h("time", { datetime: iso, title: at.toLocaleString() }, text);
}

export function badge(status, attrs = {}) {
  return h("span", { class: `badge s-${status}`, ...attrs }, String(status).replaceAll("_", " "));
}

export const FINISHED = new Set(FINISHED_STATUSES);
export const STATUSES = RUN_STATUSES;

/** Whether a scroll box shows its end, so that what is appended should scroll into view. */
export function atBottom(el) {
  return el.scrollHeight - el.scrollTop - el.clientHeight < 24;
}
