// What past runs of this run's playbook in its environment taught: per step durations and success, and what to
// change. Each environment is learned apart: a step that fails in staging is no advice for production.

import { api, fill, formatDuration, h } from "./lib.js";

const percent = (rate) => (rate === undefined || rate === null ? "–" : `${Math.round(rate * 100)}%`);
const ms = (value) => (value === undefined || value === null ? "–" : formatDuration(value));

export function insightsPanel() {
  const content = h("div", { "data-testid": "insights" }, h("p", { class: "muted" }, "Loading…"));
  const el = h("section", { class: "panel", "aria-labelledby": "insights-h" },
    h("h2", { id: "insights-h" }, "What past runs taught"), content);
  let asked = null;

  async function load(playbook, environment) {
    const query = `playbook=${encodeURIComponent(playbook)}&environment=${encodeURIComponent(environment)}`;
    const result = await api(`/api/insights?${query}`);
    if (!result.ok) {
      fill(content, h("p", { class: "muted" }, `No insights: ${result.error.message}`));
      return;
    }
    const known = result.data.playbooks.find((p) => p.playbook === playbook);
    if (!known) {
      fill(content, h("p", { class: "muted" }, `Nothing learned about this playbook ${where(environment)} yet: its runs `
        + "teach the engine as they end."));
      return;
    }
    fill(content, summary(known, environment), stepTable(known.steps), advice(known.recommendations || []));
  }

  return {
    el,
    update(view) {                       // asked once per page: the knowledge changes slowly
      if (!view.playbook || asked === view.playbook) return;
      asked = view.playbook;
      if (view.may && !view.may.insights) {    // not asked: the refusal would be recorded at every visit
        fill(content, h("p", { class: "muted" }, `Insights about this playbook ${where(view.environment || "")} are `
          + "learned from its runs there; your grants do not let you read them."));
        return;
      }
      load(view.playbook, view.environment || "");
    },
  };
}

const where = (environment) => (environment ? `in ${environment}` : "without an environment");

function summary(known, environment) {
  const d = known.durations || {};
  return h("p", { "data-testid": "insights-summary" },
    `${known.runs} runs ${where(environment)}, ${percent(known.success_rate)} completed; duration p50 ${ms(d.p50_ms)}, p95 ${ms(d.p95_ms)}`);
}

function stepTable(steps) {
  const rows = steps.map((step) => {
    const d = step.durations || {};
    const failures = Object.entries(step.failures_by_category || {}).map(([category, n]) => `${category} ${n}`).join(", ");
    return h("tr", { "data-step": step.step },
      h("td", { class: "mono" }, step.step), h("td", {}, percent(step.success_rate)),
      h("td", {}, percent(step.first_attempt_rate)), h("td", {}, ms(d.p50_ms)), h("td", {}, ms(d.p95_ms)),
      h("td", {}, failures || "–"));
  });
  return h("div", { class: "table-wrap" }, h("table", { "data-testid": "insights-steps" },
    h("thead", {}, h("tr", {}, ...["Step", "Passed", "First try", "p50", "p95", "Failures"].map((t) => h("th", {}, t)))),
    h("tbody", {}, ...rows)));
}

function advice(recommendations) {
  if (!recommendations.length) return h("p", { class: "muted" }, "No recommendation: the evidence so far needs no change.");
  return h("ul", { "data-testid": "insights-advice" }, ...recommendations.map((r) => {
    const suggestion = Object.entries(r.suggestion || {}).map(([key, value]) => `${key}: ${JSON.stringify(value)}`).join(", ");
    return h("li", { "data-kind": r.kind },
      h("strong", {}, r.kind), " ", r.message, suggestion ? h("span", { class: "mono" }, ` (${suggestion})`) : "",
      h("span", { class: "muted small" }, ` ${r.evidence.count} observations, ${percent(r.evidence.confidence)} sure`));
  }));
}
