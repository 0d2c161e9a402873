// The dashboard shell: who is signed in, the status area, and hash routing between the views.

import { RUN_ID_PATTERN } from "./constants.js";
import { api, setReporter, setSignedOutHandler, h, fill } from "./lib.js";
import { runList } from "./run-list.js";
import { startForm } from "./start-form.js";
import { runDetail } from "./run.js";
import { metricsView } from "./metrics.js";
import { auditView } from "./audit.js";

const ROUTES = [
  { pattern: new RegExp(`^#/runs/(${RUN_ID_PATTERN})$`), view: runDetail, nav: "runs", title: (id) => `Run ${id}` },
  { pattern: /^#\/runs$/, view: runList, nav: "runs", title: () => "Runs" },
  { pattern: /^#\/start$/, view: startForm, nav: "start", title: () => "Start a run" },
  { pattern: /^#\/metrics$/, view: metricsView, nav: "metrics", title: () => "Metrics" },
  { pattern: /^#\/audit$/, view: auditView, nav: "audit", title: () => "Audit" },
];

const main = document.getElementById("view");
const outcome = document.getElementById("outcome");
let unmount = () => {};

function showOutcome(kind, text) {
  outcome.dataset.kind = kind;
  const stamp = new Date().toLocaleTimeString([], { hour12: false });
  fill(outcome, h("span", { class: "outcome-icon", "aria-hidden": "true" }, kind === "ok" ? "✓" : kind === "error" ? "✗" : "•"),
    h("span", { class: "outcome-text", "data-testid": "outcome-text" }, text), h("span", { class: "muted outcome-time" }, stamp));
}

// -- signing in ----------------------------------------------------------------------------

const who = document.getElementById("who");
let signedIn = null;

function showWho() {
  if (!signedIn) {
    fill(who);
    return;
  }
  const signOut = h("button", { type: "button", class: "button secondary", "data-testid": "sign-out" }, "Sign out");
  signOut.addEventListener("click", async () => {
    await api("/api/session", { method: "DELETE" });
    signedIn = null;
    showWho();
    showSignIn("Signed out.");
  });
  const grants = signedIn.grants.join(", ") || "no grants";
  fill(who, h("span", { class: "muted" }, "Signed in as "),
    h("strong", { "data-testid": "signed-in-as", title: grants }, signedIn.name), signOut);
}

function showSignIn(note = "") {
  unmount();
  unmount = () => {};
  document.title = "Sign in · Playbook Engine";
  const token = h("input", { id: "token", type: "password", autocomplete: "off", spellcheck: "false",
    "data-testid": "token", required: true });
  const form = h("form", { class: "sign-in", "data-testid": "sign-in-form" },
    h("label", { for: "token" }, "API token"), token,
    h("button", { type: "submit", class: "button", "data-testid": "sign-in" }, "Sign in"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    await signIn({ token: token.value.trim() });
  });
  fill(main, h("h1", {}, "Sign in"),
    h("p", {}, "Paste an API token (", h("code", {}, "playbook token create"), "), or open the sign-in link ",
      h("code", {}, "playbook up"), " printed."),
    note ? h("p", { class: "muted", "data-testid": "sign-in-note" }, note) : null, form);
}

async function signIn(proof) {
  const result = await api("/api/session", { method: "POST", body: proof });
  if (!result.ok) {
    showOutcome("error", `Sign-in refused: ${result.error.message} [${result.status} ${result.error.code}]`);
    showSignIn();
    return false;
  }
  signedIn = result.data;
  showWho();
  showOutcome("ok", `Signed in as ${signedIn.name}`);
  route();
  return true;
}

/** A one-time sign-in link (`#code=...`, never sent to the server by the browser): trade it for a session. */
async function takeCode() {
  if (!location.hash.startsWith("#code=")) return false;
  const code = decodeURIComponent(location.hash.slice(6));
  history.replaceState(null, "", "#/runs");      // the code is spent: it leaves the address bar at once
  await signIn({ code });
  return true;
}

async function start() {
  if (await takeCode()) return;
  const current = await api("/api/session");
  if (current.ok) {
    signedIn = current.data;
    showWho();
    route();
  } else {
    showSignIn();
  }
}

function route() {
  if (!signedIn) return;
  const hash = location.hash || "#/runs";
  if (hash === "#/" || hash === "#" || !location.hash) {
    location.replace("#/runs");
    return;
  }
  unmount();
  unmount = () => {};
  const found = ROUTES.map((r) => ({ r, match: hash.match(r.pattern) })).find((x) => x.match);
  for (const link of document.querySelectorAll("nav.main-nav a")) {
    if (found && link.dataset.nav === found.r.nav) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  main.replaceChildren();
  if (!found) {
    document.title = "Not found · Playbook Engine";
    append404();
    return;
  }
  const args = found.match.slice(1).map(decodeURIComponent);
  document.title = `${found.r.title(...args)} · Playbook Engine`;
  unmount = found.r.view(main, ...args) || (() => {});
  const heading = main.querySelector("h1");
  if (heading && document.activeElement && document.activeElement.closest("nav.main-nav, main")) {
    heading.setAttribute("tabindex", "-1");
    heading.focus({ preventScroll: true });
  }
}

function append404() {
  main.append(h("h1", {}, "Not found"), h("p", {}, "Nothing lives at ", h("code", {}, location.hash), ". ",
    h("a", { href: "#/runs" }, "See the runs"), "."));
}

document.querySelector("a.skip").addEventListener("click", (event) => {
  event.preventDefault();   // "#view" is not a route
  main.focus();
});
setReporter(showOutcome);
setSignedOutHandler(() => {
  if (!signedIn) return;
  signedIn = null;
  showWho();
  showSignIn("Your session ended; sign in again.");
});
window.addEventListener("hashchange", async () => {
  if (!(await takeCode())) route();
});
start();
