// The dashboard shell: who you are, the status area, and hash routing between the views.

import { RUN_ID_PATTERN } from "./constants.js";
import { getUser, setUser, setReporter, USER_PATTERN, h, fill } from "./lib.js";
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

function setupUser() {
  const input = document.getElementById("user");
  const hint = document.getElementById("user-hint");
  const check = () => {
    const name = input.value.trim();
    const bad = name !== "" && !USER_PATTERN.test(name);
    input.setAttribute("aria-invalid", bad ? "true" : "false");
    hint.textContent = bad ? "1–64 letters, digits or . @ + - _" : name ? "" : "commands are sent as anonymous";
  };
  input.value = getUser();
  input.addEventListener("input", () => {
    setUser(input.value);
    check();
  });
  check();
}

function route() {
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
setupUser();
window.addEventListener("hashchange", route);
route();
