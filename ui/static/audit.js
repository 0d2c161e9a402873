// The audit trail: who did what, newest first, filtered by actor, run and action.

import { AUDIT_ACTIONS } from "./constants.js";
import { api, fill, h, timeEl } from "./lib.js";

export function auditView(root) {
  const actor = h("input", { id: "audit-actor", "data-testid": "audit-actor", spellcheck: "false" });
  const runId = h("input", { id: "audit-run", "data-testid": "audit-run", spellcheck: "false" });
  const action = h("select", { id: "audit-action", "data-testid": "audit-action" }, h("option", { value: "" }, "any"),
    AUDIT_ACTIONS.map((a) => h("option", { value: a }, a.replaceAll("_", " "))));
  const tbody = h("tbody");
  const note = h("p", { class: "muted", "data-testid": "audit-count" });
  const form = h("form", { class: "toolbar", role: "search" },
    h("label", { for: "audit-actor" }, "Actor"), actor, h("label", { for: "audit-run" }, "Run"), runId,
    h("label", { for: "audit-action" }, "Action"), action,
    h("button", { type: "submit", class: "button", "data-testid": "audit-refresh" }, "Refresh"));
  root.append(h("h1", {}, "Audit"), h("p", { class: "muted" }, "Who did what, newest first."), form,
    h("div", { class: "table-wrap" }, h("table", { class: "audit", "data-testid": "audit-table" },
      h("thead", {}, h("tr", {}, ["Time", "Actor", "Action", "Run", "Step / breaker", "Detail"].map((n) => h("th", { scope: "col" }, n)))),
      tbody)),
    note);

  const load = async () => {
    const query = new URLSearchParams({ limit: "500" });
    if (actor.value.trim()) query.set("actor", actor.value.trim());
    if (runId.value.trim()) query.set("run_id", runId.value.trim());
    if (action.value) query.set("action", action.value);
    const result = await api(`/api/audit?${query}`);
    if (!result.ok) {
      fill(tbody);
      note.textContent = `Cannot load the audit trail: ${result.error.message}`;
      return;
    }
    fill(tbody, result.data.map((e) => h("tr", { "data-testid": "audit-row", "data-action": e.action },
      h("td", {}, timeEl(e.at)), h("td", {}, e.on_behalf_of ? `${e.actor} for ${e.on_behalf_of}` : e.actor), h("td", {}, h("span", { class: `tag a-${e.action}` }, e.action.replaceAll("_", " "))),
      h("td", { class: "mono" }, e.run_id ? h("a", { href: `#/runs/${e.run_id}` }, e.run_id) : ""),
      h("td", { class: "mono" }, e.step_id || e.circuit || ""), h("td", {}, e.detail))));
    note.textContent = result.data.length ? `${result.data.length} entries${result.data.length === 500 ? " (the newest 500)" : ""}` : "No entries match.";
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    load();
  });
  load();
}
