// One run, live: its head and controls, approvals, the step graph, the history and the logs, on one stream.

import { api, fill, FINISHED, h, live, liveBadge, report } from "./lib.js";
import { stepGraph } from "./graph.js";
import { runHead } from "./run-controls.js";
import { gatePanel } from "./run-gates.js";
import { runLogs } from "./run-logs.js";
import { insightsPanel } from "./run-insights.js";
import { runHistory } from "./run-timeline.js";

export function runDetail(root, runId) {
  const base = `/api/runs/${runId}`;
  let view = null;
  let heard = false;
  const said = {};                        // who last paused, resumed, cancelled (with reason)
  const asked = {};                       // the approval message as asked (placeholders filled in)

  const state = liveBadge();
  const head = runHead(runId, base);
  const gates = gatePanel(runId, base);
  const logs = runLogs();
  const graph = stepGraph({ onSelect: (stepId) => logs.show(stepId, true) });
  const history = runHistory();
  const insights = insightsPanel();
  const body = h("div", {},
    head.facts, head.controls, gates.el,
    h("section", { class: "panel", "aria-labelledby": "steps-h" }, h("h2", { id: "steps-h" }, "Steps"), graph.el),
    h("div", { class: "two-col" }, history.panel, logs.el),
    insights.el,
    history.raw);
  root.append(
    h("p", { class: "crumbs" }, h("a", { href: "#/runs" }, "Runs"), " › ", h("span", { class: "mono" }, runId)),
    h("div", { class: "title-row" }, head.title, head.status, state),
    body);

  const onEvent = (data) => {
    heard = true;
    const e = data.event;
    if (data.type === "RunPaused") said.paused = e;
    if (data.type === "RunResumed") said.resumed = e;
    if (data.type === "RunCancelRequested") said.cancel = e;
    if (data.type === "RollbackStarted") said.rollback = e;
    if (data.type === "RunRetried") { said.retry = e; delete said.cancel; }
    if (data.type === "ApprovalRequested") asked[e.step_id] = e.message;
    history.add(data);
  };

  const onView = (data) => {
    heard = true;
    view = data;
    head.update(data, said);
    graph.update(data);
    gates.update(data, asked, FINISHED.has(data.status));
    logs.steps(data);
    history.update(data);
    insights.update(data);
  };

  // The logs come on the run's own stream (`?logs=1`): one connection per run page.
  const handlers = { event: onEvent, view: onView, log: logs.record, live: logs.live };
  const closeRun = live(`${base}/stream?logs=1`, handlers, async (streamState) => {
    state.set(streamState);
    if (streamState !== "live" && !heard) {          // never got in: say why (usually no such run)
      const result = await api(base);
      if (!result.ok) {
        closeRun();
        state.set("closed");
        head.status.textContent = "unknown";
        report("error", `Run ${runId}: ${result.error.message}`);
        fill(body, h("p", { class: "error-text", "data-testid": "run-error" }, result.error.message, ". "),
          h("p", {}, h("a", { href: "#/runs" }, "Back to the runs")));
      }
    }
  });
  const ticker = setInterval(() => {
    if (!view || FINISHED.has(view.status)) return;
    head.tick(view);
    graph.tick();
    history.tick();
  }, 1000);

  return () => {
    closeRun();
    clearInterval(ticker);
    head.dispose();
    graph.dispose();
  };
}
