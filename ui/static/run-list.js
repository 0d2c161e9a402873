// The run list, live from /api/runs/stream: newest first, filtered by status and text.

import {
  badge, elapsed, fill, FINISHED, formatDuration, h, live, liveBadge, STATUSES, timeEl,
} from "./lib.js";

const filters = { status: "", text: "" };   // kept while the page lives, so "back" finds them

export function runList(root) {
  const runs = new Map();
  const rows = new Map();
  let total = 0;
  const state = liveBadge();
  const statusSelect = h("select", { id: "filter-status", "data-testid": "filter-status" },
    h("option", { value: "" }, "any status"), h("option", { value: "active" }, "active (not finished)"),
    STATUSES.map((status) => h("option", { value: status }, status.replaceAll("_", " "))));
  statusSelect.value = filters.status;
  const textInput = h("input", { id: "filter-text", type: "search", "data-testid": "filter-text", value: filters.text,
    placeholder: "playbook, run id, actor…" });
  const count = h("span", { class: "muted", "data-testid": "run-count" });
  const tbody = h("tbody");
  const empty = h("p", { class: "empty", hidden: true }, "No runs match.");

  root.append(
    h("div", { class: "title-row" }, h("h1", {}, "Runs"), state,
      h("a", { class: "button primary", href: "#/start", "data-testid": "start-link" }, "Start a run")),
    h("div", { class: "toolbar", role: "search" },
      h("label", { for: "filter-status" }, "Status"), statusSelect,
      h("label", { for: "filter-text" }, "Filter"), textInput, count),
    h("div", { class: "table-wrap" }, h("table", { class: "runs", "data-testid": "run-table" },
      h("caption", { class: "visually-hidden" }, "Runs, newest first; updates live"),
      h("thead", {}, h("tr", {}, ["Status", "Run", "Playbook", "Environment", "Started by", "Started", "Duration", "Gates waiting"]
        .map((name) => h("th", { scope: "col" }, name)))),
      tbody)),
    empty);

  const matches = (run) => {
    if (filters.status === "active" ? FINISHED.has(run.status)
      : filters.status && run.status !== filters.status) return false;
    const text = filters.text.trim().toLowerCase();
    return !text || [run.playbook, run.run_id, run.actor, run.environment].some((v) => (v || "").toLowerCase().includes(text));
  };

  // One render per frame however many changes came meanwhile: a burst of 500 runs froze the page for 0.5 s.
  let pending = false;
  const renderSoon = () => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => { pending = false; render(); });
  };

  const render = () => {
    const shown = [...runs.values()].filter(matches).sort((a, b) => (a.started_at < b.started_at ? 1 : -1));
    shown.forEach((run, i) => {
      let row = rows.get(run.run_id);
      if (!row) rows.set(run.run_id, (row = makeRow()));
      updateRow(row, run);
      if (tbody.children[i] !== row) tbody.insertBefore(row, tbody.children[i] || null);
    });
    while (tbody.children.length > shown.length) tbody.lastElementChild.remove();
    empty.hidden = shown.length > 0;
    empty.textContent = runs.size ? "No runs match the filter." : "No runs yet. Start one.";
    count.textContent = `${shown.length} shown of ${Math.max(total, runs.size)}`;
  };

  statusSelect.addEventListener("change", () => { filters.status = statusSelect.value; render(); });
  textInput.addEventListener("input", () => { filters.text = textInput.value; render(); });

  let leftOutFrom = null;      // runs the snapshot left out started no later than this
  const close = live("/api/runs/stream", {
    snapshot(data) {
      runs.clear();
      for (const run of data.runs) runs.set(run.run_id, run);
      total = data.total;
      leftOutFrom = data.left_out_from;
      render();
    },
    run(run) {
      if (!runs.has(run.run_id) && (leftOutFrom === null || run.started_at > leftOutFrom)) total += 1;
      runs.set(run.run_id, run);
      renderSoon();
    },
  }, state.set);
  const ticker = setInterval(() => {
    for (const row of tbody.children) tickRow(row);
  }, 1000);
  return () => { close(); clearInterval(ticker); };
}

function makeRow() {
  const row = h("tr", { "data-testid": "run-row" });
  row.cells_ = {
    status: h("td"), run: h("td", { class: "mono" }), playbook: h("td"), environment: h("td"), actor: h("td"),
    started: h("td"), duration: h("td", { class: "num" }), gates: h("td", { class: "num" }),
  };
  row.append(...Object.values(row.cells_));
  return row;
}

function updateRow(row, run) {
  const key = JSON.stringify(run);
  if (row.key_ === key) return;
  row.key_ = key;
  row.run_ = run;
  const c = row.cells_;
  row.dataset.runId = run.run_id;
  row.dataset.status = run.status;
  fill(c.status, badge(run.status), run.dry_run ? h("span", { class: "tag" }, "dry run") : null);
  fill(c.run, h("a", { href: `#/runs/${run.run_id}`, "data-testid": "run-link" }, run.run_id));
  fill(c.playbook, run.playbook);
  fill(c.environment, run.environment || h("span", { class: "muted" }, "–"));
  fill(c.actor, run.actor);
  fill(c.started, timeEl(run.started_at));
  fill(c.gates, run.gates_waiting ? h("span", { class: "badge s-waiting_approval" }, String(run.gates_waiting)) : "");
  tickRow(row);
}

function tickRow(row) {
  const run = row.run_;
  if (run) row.cells_.duration.textContent = formatDuration(elapsed(run.started_at, run.finished_at));
}
