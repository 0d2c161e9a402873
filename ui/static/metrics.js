// The metrics view, live from /api/metrics/stream: tiles, charts and the circuit breakers.

import { api, badge, command, fill, formatDuration, h, live, liveBadge, timeEl } from "./lib.js";
import { hbars, stackedBars } from "./charts.js";

const STEP_BARS = 15;
const ERROR_HOURS = 48;

export function metricsView(root) {
  const state = liveBadge();
  const tiles = h("div", { class: "tiles", "data-testid": "metric-tiles" });
  const charts = h("div", { class: "charts" });
  const circuits = h("div", { "data-testid": "circuits" }, h("p", { class: "muted" }, "Loading…"));
  root.append(
    h("div", { class: "title-row" }, h("h1", {}, "Metrics"), state),
    tiles, charts,
    h("section", { class: "panel", "aria-labelledby": "circuits-h" }, h("h2", { id: "circuits-h" }, "Circuit breakers"), circuits));

  let circuitKey = null;
  const render = (m) => {
    renderTiles(tiles, m);
    fill(charts,
      hbars("chart-step-durations", "Mean step duration (timed attempts)", stepItems(m.steps), { empty: "No step has run yet." }),
      hbars("chart-success", "Success rate by playbook (recent runs)", playbookItems(m.playbooks), { max: 1, empty: "No run has finished yet." }),
      stackedBars("chart-errors", `Step failures by category, per hour (last ${ERROR_HOURS} h)`, errorHours(m.errors_over_time),
        { empty: "No step has failed." }),
      hbars("chart-retries", "Retries by error category", Object.entries(m.retries.by_category).sort((a, b) => b[1] - a[1])
        .map(([category, n]) => ({ label: category, value: n, text: String(n) })), { empty: "No retries." }));
    const key = JSON.stringify([m.circuits, m.circuit_openings]);
    if (key !== circuitKey) {
      circuitKey = key;
      loadCircuits(circuits);
    }
  };

  let close = () => {};
  let gone = false;
  api("/api/metrics").then((result) => {
    if (result.ok) render(result.data);
    else fill(charts, h("p", { class: "error-text" }, `Cannot load metrics: ${result.error.message}`));
    if (gone) return;
    // Refused (403: the grants cover only some playbooks): the stream would be refused as well, asked again
    // and again while the tab is open, each time a refusal on record. The engine away: the stream waits for it.
    if (result.status === 403) state.set("closed");
    else close = live("/api/metrics/stream", { metrics: render }, state.set);
  });
  return () => { gone = true; close(); };
}

function renderTiles(tiles, m) {
  const total = Object.values(m.runs_by_status).reduce((a, b) => a + b, 0);
  const givenUp = Object.values(m.abandoned_messages || {}).reduce((a, b) => a + b, 0);
  const tile = (label, value, testid, cls = "") => h("div", { class: `tile ${cls}`, "data-testid": testid },
    h("div", { class: "tile-value" }, String(value)), h("div", { class: "tile-label" }, label));
  fill(tiles,
    tile("runs", total, "tile-runs"),
    Object.entries(m.runs_by_status).sort().map(([status, n]) => tile(status.replaceAll("_", " "), n, `tile-${status}`, `s-${status}`)),
    tile("approvals waiting", m.approvals_waiting, "tile-approvals", m.approvals_waiting ? "s-waiting_approval" : ""),
    tile("retries", m.retries.total, "tile-retries"),
    // A service gave up on a run's message (docs/execution.md): shown only once it happened.
    givenUp ? tile("messages given up", givenUp, "tile-abandoned", "s-failed") : []);
}

function stepItems(steps) {
  return steps.filter((x) => x.mean_ms != null)
    .sort((a, b) => b.mean_ms - a.mean_ms)
    .slice(0, STEP_BARS)
    .map((x) => ({
      label: `${x.playbook} › ${x.step}`, value: x.mean_ms,
      text: `${formatDuration(x.mean_ms)} · n=${x.count}${x.failed ? ` · ${x.failed} failed` : ""}`,
      cls: x.failed && !x.succeeded ? "bad" : "",
    }));
}

function playbookItems(playbooks) {
  return playbooks.map((p) => ({
    label: p.playbook,
    value: p.success_rate ?? 0,
    text: p.success_rate == null ? "no finished runs" : `${Math.round(p.success_rate * 100)}% · ${p.completed} ok, ${p.failed} failed`,
    cls: p.success_rate == null ? "none" : p.success_rate >= 0.9 ? "good" : p.success_rate >= 0.5 ? "warn" : "bad",
  }));
}

/** The hours with failures, on a continuous axis ending at the current hour. */
function errorHours(list) {
  if (!list.length) return [];
  const byHour = new Map(list.map((x) => [x.hour, x.categories]));
  const toMs = (hour) => Date.parse(hour.replace(/Z$/, ":00Z"));
  const now = new Date();
  now.setUTCMinutes(0, 0, 0);
  const last = Math.max(now.getTime(), toMs(list[list.length - 1].hour));
  const first = Math.max(toMs(list[0].hour), last - (ERROR_HOURS - 1) * 3600_000);
  const hours = [];
  for (let t = first; t <= last; t += 3600_000) {
    const hour = new Date(t).toISOString().slice(0, 13) + ":00Z";
    hours.push({ hour, categories: byHour.get(hour) || {} });
  }
  return hours;
}

async function loadCircuits(box) {
  const result = await api("/api/circuits");
  if (!result.ok) {
    fill(box, h("p", { class: "error-text" }, `Cannot list breakers: ${result.error.message}`));
    return;
  }
  if (!result.data.length) {
    fill(box, h("p", { class: "muted" }, "No breaker has recorded a failure yet: a breaker shows up here once a guarded call fails."));
    return;
  }
  fill(box, h("div", { class: "table-wrap" }, h("table", { "data-testid": "circuit-table" },
    h("thead", {}, h("tr", {}, ["Breaker", "State", "Failures in a row", "Open until", "Reason", "Last change", ""].map((n) => h("th", { scope: "col" }, n)))),
    h("tbody", {}, result.data.map((c) => h("tr", { "data-testid": "circuit-row", "data-key": c.key, "data-state": c.state },
      h("td", { class: "mono" }, c.key), h("td", {}, badge(c.state)),
      h("td", { class: "num" }, String(c.failures_in_a_row)), h("td", {}, timeEl(c.open_until)), h("td", {}, c.reason || ""),
      h("td", {}, timeEl(c.last_change)),
      h("td", {}, c.state !== "closed" ? h("button", { type: "button", class: "button small", onclick: async () => {
        const reset = await command(`Reset breaker ${c.key}`, "/api/circuits/reset", { key: c.key });
        if (reset.ok) loadCircuits(box);
      } }, "Reset") : null)))))));
}
